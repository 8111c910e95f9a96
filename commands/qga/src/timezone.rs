//! `guest-get-timezone`: the local time zone's abbreviation in effect now
//! and its offset east of UTC in seconds, as glib (and so qemu-ga) finds
//! them: from `/etc/localtime` (a TZif file, RFC 8536), its transitions
//! and, past the last one, its footer's POSIX TZ rule; UTC when there is
//! no `/etc/localtime`.

use guestward_sdk::{Reply, files, qga};
use serde_json::{Value, json};

const LOCALTIME: &str = "/etc/localtime";

pub fn guest_timezone() -> Result<Value, Reply> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
    let zone = match files::read(LOCALTIME) {
        Ok(tzif) => zone_at(&tzif, now)
            .map_err(|why| qga::generic_error(format!("{LOCALTIME} is not a usable time zone file: {why}")))?,
        Err(files::Error::NotFound(_)) => Zone::utc(),
        Err(error) => {
            return Err(qga::generic_error(format!(
                "cannot read the time zone: {}",
                error.text()
            )));
        }
    };
    Ok(json!({ "zone": zone.abbreviation, "offset": zone.offset }))
}

/// A local time type: its abbreviation and offset east of UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub abbreviation: String,
    pub offset: i64,
}

impl Zone {
    fn utc() -> Self {
        Self {
            abbreviation: "UTC".to_owned(),
            offset: 0,
        }
    }
}

/// The local time type of the TZif data `tzif` at `time` (seconds since
/// the epoch).
pub fn zone_at(tzif: &[u8], time: i64) -> Result<Zone, String> {
    let mut reader = Reader { data: tzif, at: 0 };
    let v1 = Header::read(&mut reader)?;
    let (header, time_size) = if v1.version >= b'2' {
        reader.skip(v1.data_len(4)?)?;
        (Header::read(&mut reader)?, 8)
    } else {
        (v1, 4)
    };
    let transitions: Vec<i64> = (0..header.time_count)
        .map(|_| reader.signed(time_size))
        .collect::<Result<_, _>>()?;
    let indices = reader.bytes(header.time_count)?.to_vec();
    let types: Vec<(i64, usize)> = (0..header.type_count)
        .map(|_| {
            let offset = reader.signed(4)?;
            let _is_dst = reader.bytes(1)?;
            let designation = usize::from(reader.bytes(1)?[0]);
            Ok((offset, designation))
        })
        .collect::<Result<_, String>>()?;
    let designations = reader.bytes(header.char_count)?;
    reader.skip(header.trailer_len(time_size)?)?;
    if types.is_empty() {
        return Err("it has no local time types".to_owned());
    }
    let zone_of = |index: usize| -> Result<Zone, String> {
        let (offset, designation) = *types
            .get(index)
            .ok_or_else(|| format!("transition to local time type {index}, of {}", types.len()))?;
        let name = designations
            .get(designation..)
            .and_then(|rest| rest.split(|&b| b == 0).next())
            .ok_or_else(|| format!("abbreviation index {designation} is past the abbreviations"))?;
        Ok(Zone {
            abbreviation: String::from_utf8_lossy(name).into_owned(),
            offset,
        })
    };
    let after_last = transitions.last().is_none_or(|&last| time >= last);
    if after_last && header.version >= b'2' {
        let footer = footer(reader.rest())?;
        if !footer.is_empty() {
            return posix_zone(footer, time);
        }
    }
    match transitions.iter().rposition(|&at| at <= time) {
        Some(position) => zone_of(usize::from(indices[position])),
        // Before the first transition (or none at all): the first type.
        None => zone_of(0),
    }
}

/// The six counts of a TZif header.
struct Header {
    version: u8,
    utc_count: usize,
    std_count: usize,
    leap_count: usize,
    time_count: usize,
    type_count: usize,
    char_count: usize,
}

impl Header {
    fn read(reader: &mut Reader<'_>) -> Result<Self, String> {
        if reader.bytes(4)? != b"TZif" {
            return Err("it does not start with \"TZif\"".to_owned());
        }
        let version = reader.bytes(1)?[0];
        reader.skip(15)?;
        let mut count = || -> Result<usize, String> {
            let value = reader.signed(4)?;
            usize::try_from(value).map_err(|_| format!("a negative count {value}"))
        };
        Ok(Self {
            version,
            utc_count: count()?,
            std_count: count()?,
            leap_count: count()?,
            time_count: count()?,
            type_count: count()?,
            char_count: count()?,
        })
    }

    /// The length of the whole data block with `time_size`-byte times.
    fn data_len(&self, time_size: usize) -> Result<usize, String> {
        let parts = [
            self.time_count.checked_mul(time_size + 1),
            self.type_count.checked_mul(6),
            Some(self.char_count),
            self.trailer_len(time_size).ok(),
        ];
        parts
            .into_iter()
            .try_fold(0_usize, |total, part| total.checked_add(part?))
            .ok_or_else(|| "its counts overflow".to_owned())
    }

    /// Leap second records and the standard/UT indicators.
    fn trailer_len(&self, time_size: usize) -> Result<usize, String> {
        self.leap_count
            .checked_mul(time_size + 4)
            .and_then(|leaps| leaps.checked_add(self.std_count))
            .and_then(|total| total.checked_add(self.utc_count))
            .ok_or_else(|| "its counts overflow".to_owned())
    }
}

/// A cursor over the file that fails, rather than panics, past its end.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, count: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(count).filter(|&end| end <= self.data.len());
        let end = end.ok_or_else(|| format!("it is truncated ({} bytes)", self.data.len()))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn skip(&mut self, count: usize) -> Result<(), String> {
        self.bytes(count).map(|_| ())
    }

    /// A big-endian signed integer of 4 or 8 bytes.
    fn signed(&mut self, size: usize) -> Result<i64, String> {
        let bytes = self.bytes(size)?;
        Ok(match *bytes {
            [a, b, c, d] => i64::from(i32::from_be_bytes([a, b, c, d])),
            _ => {
                let mut eight = [0; 8];
                eight.copy_from_slice(bytes);
                i64::from_be_bytes(eight)
            }
        })
    }

    fn rest(&self) -> &'a [u8] {
        &self.data[self.at.min(self.data.len())..]
    }
}

/// The POSIX TZ string between the newlines that follow version 2+ data.
fn footer(rest: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(rest).map_err(|_| "its footer is not text".to_owned())?;
    let inner = text
        .strip_prefix('\n')
        .and_then(|text| text.split_once('\n'))
        .map(|(footer, _)| footer);
    Ok(inner.unwrap_or(""))
}

/// The local time type a POSIX TZ string (`CET-1CEST,M3.5.0,M10.5.0/3`)
/// gives at `time`.
pub fn posix_zone(tz: &str, time: i64) -> Result<Zone, String> {
    let rule = PosixRule::parse(tz).ok_or_else(|| format!("its TZ rule {tz:?} is not a POSIX TZ string"))?;
    Ok(rule.zone_at(time))
}

/// A parsed POSIX TZ string.
struct PosixRule {
    standard: Zone,
    daylight: Option<(Zone, RuleDate, i64, RuleDate, i64)>,
}

/// When daylight saving time starts or ends in a year.
#[derive(Clone, Copy)]
enum RuleDate {
    /// `Jn`: day 1..=365, February 29 never counted.
    Julian(i64),
    /// `n`: day 0..=365, February 29 counted.
    Zero(i64),
    /// `Mm.w.d`: day `d` (0 Sunday) of week `w` (5: the last) of month `m`.
    Month(i64, i64, i64),
}

impl PosixRule {
    fn parse(text: &str) -> Option<Self> {
        let mut rest = text;
        let standard_name = name(&mut rest)?;
        let standard_offset = -offset(&mut rest)?;
        let standard = Zone {
            abbreviation: standard_name,
            offset: standard_offset,
        };
        if rest.is_empty() {
            return Some(Self {
                standard,
                daylight: None,
            });
        }
        let daylight_name = name(&mut rest)?;
        let daylight_offset = if rest.starts_with(',') || rest.is_empty() {
            standard_offset + 3600
        } else {
            -offset(&mut rest)?
        };
        // No rule: the US rules POSIX implementations default to.
        let (start, start_time, end, end_time) = if rest.is_empty() {
            (RuleDate::Month(3, 2, 0), 7200, RuleDate::Month(11, 1, 0), 7200)
        } else {
            rest = rest.strip_prefix(',')?;
            let (start, start_time) = rule_date(&mut rest)?;
            rest = rest.strip_prefix(',')?;
            let (end, end_time) = rule_date(&mut rest)?;
            (start, start_time, end, end_time)
        };
        if !rest.is_empty() {
            return None;
        }
        let daylight = Zone {
            abbreviation: daylight_name,
            offset: daylight_offset,
        };
        Some(Self {
            standard,
            daylight: Some((daylight, start, start_time, end, end_time)),
        })
    }

    fn zone_at(&self, time: i64) -> Zone {
        let Some((daylight, start, start_time, end, end_time)) = &self.daylight else {
            return self.standard.clone();
        };
        let year = civil_year(time.saturating_add(self.standard.offset));
        let in_daylight = (year - 1..=year + 1).any(|year| {
            // Start is given in standard local time, end in daylight time.
            let starts = day_of(*start, year) * 86400 + start_time - self.standard.offset;
            let ends = day_of(*end, year) * 86400 + end_time - daylight.offset;
            if starts < ends {
                starts <= time && time < ends
            } else {
                // Southern hemisphere: daylight time spans the new year.
                let next_ends = day_of(*end, year + 1) * 86400 + end_time - daylight.offset;
                starts <= time && time < next_ends
            }
        });
        if in_daylight {
            daylight.clone()
        } else {
            self.standard.clone()
        }
    }
}

/// A zone name: letters, or anything but `>` between `<` and `>`.
fn name(rest: &mut &str) -> Option<String> {
    let text = *rest;
    let (name, after) = if let Some(quoted) = text.strip_prefix('<') {
        let (name, after) = quoted.split_once('>')?;
        (name, after)
    } else {
        let end = text.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(text.len());
        text.split_at(end)
    };
    if name.len() < 3 {
        return None;
    }
    *rest = after;
    Some(name.to_owned())
}

/// `[+-]hh[:mm[:ss]]` in seconds (hours up to 167, as TZif 3 allows).
fn offset(rest: &mut &str) -> Option<i64> {
    let mut text = *rest;
    let sign = match text.as_bytes().first() {
        Some(b'-') => {
            text = &text[1..];
            -1
        }
        Some(b'+') => {
            text = &text[1..];
            1
        }
        _ => 1,
    };
    let mut seconds = 0;
    for (index, unit) in [3600, 60, 1].into_iter().enumerate() {
        if index > 0 {
            match text.strip_prefix(':') {
                Some(after) => text = after,
                None => break,
            }
        }
        let end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        if end == 0 || end > 3 {
            return None;
        }
        let value: i64 = text[..end].parse().ok()?;
        let most = if index == 0 { 167 } else { 59 };
        if value > most {
            return None;
        }
        seconds += value * unit;
        text = &text[end..];
    }
    *rest = text;
    Some(sign * seconds)
}

/// A rule date and its time of day (default 02:00).
fn rule_date(rest: &mut &str) -> Option<(RuleDate, i64)> {
    let text = *rest;
    let number_end = |text: &str| text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (date, mut after) = if let Some(month) = text.strip_prefix('M') {
        let mut parts = [0_i64; 3];
        let mut tail = month;
        for (index, part) in parts.iter_mut().enumerate() {
            if index > 0 {
                tail = tail.strip_prefix('.')?;
            }
            let end = number_end(tail);
            *part = tail[..end].parse().ok()?;
            tail = &tail[end..];
        }
        let [month, week, day] = parts;
        if !(1..=12).contains(&month) || !(1..=5).contains(&week) || !(0..=6).contains(&day) {
            return None;
        }
        (RuleDate::Month(month, week, day), tail)
    } else if let Some(julian) = text.strip_prefix('J') {
        let end = number_end(julian);
        let day: i64 = julian[..end].parse().ok()?;
        if !(1..=365).contains(&day) {
            return None;
        }
        (RuleDate::Julian(day), &julian[end..])
    } else {
        let end = number_end(text);
        let day: i64 = text[..end].parse().ok()?;
        if day > 365 {
            return None;
        }
        (RuleDate::Zero(day), &text[end..])
    };
    let time = match after.strip_prefix('/') {
        Some(time) => {
            after = time;
            offset(&mut after)?
        }
        None => 7200,
    };
    *rest = after;
    Some((date, time))
}

/// The day (days since the epoch) a rule date falls on in `year`.
fn day_of(date: RuleDate, year: i64) -> i64 {
    let january_first = days_from_civil(year, 1, 1);
    match date {
        RuleDate::Julian(day) => {
            let leap_shift = i64::from(is_leap(year) && day >= 60);
            january_first + day - 1 + leap_shift
        }
        RuleDate::Zero(day) => january_first + day,
        RuleDate::Month(month, week, weekday) => {
            let first = days_from_civil(year, month, 1);
            let mut day = first + (weekday - weekday_of(first)).rem_euclid(7) + (week - 1) * 7;
            let next_month = if month == 12 {
                days_from_civil(year + 1, 1, 1)
            } else {
                days_from_civil(year, month + 1, 1)
            };
            while day >= next_month {
                day -= 7;
            }
            day
        }
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// 0 for Sunday; the epoch was a Thursday.
fn weekday_of(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The Gregorian year of a time (seconds since the epoch).
fn civil_year(time: i64) -> i64 {
    let days = time.div_euclid(86400) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let year = year_of_era + era * 400;
    if shifted_month >= 10 { year + 1 } else { year }
}

#[cfg(test)]
mod tests;
