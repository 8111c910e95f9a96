use super::*;

/// Seconds since the epoch of a UTC date and time.
fn utc(year: i64, month: i64, day: i64, hour: i64, minute: i64) -> i64 {
    days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60
}

/// A TZif file: `version`, transitions (time, type index), types (offset,
/// is-dst, abbreviation), and a footer for version 2+.
fn tzif(version: u8, transitions: &[(i64, u8)], types: &[(i32, u8, &str)], footer: &str) -> Vec<u8> {
    let mut designations = Vec::new();
    let mut type_records = Vec::new();
    for (offset, is_dst, name) in types {
        type_records.extend_from_slice(&offset.to_be_bytes());
        type_records.push(*is_dst);
        type_records.push(u8::try_from(designations.len()).unwrap());
        designations.extend_from_slice(name.as_bytes());
        designations.push(0);
    }
    let block = |time_size: usize| {
        let mut out = b"TZif".to_vec();
        out.push(version);
        out.extend_from_slice(&[0; 15]);
        for count in [0, 0, 0, transitions.len(), types.len(), designations.len()] {
            out.extend_from_slice(&u32::try_from(count).unwrap().to_be_bytes());
        }
        for (time, _) in transitions {
            if time_size == 4 {
                out.extend_from_slice(&i32::try_from(*time).unwrap().to_be_bytes());
            } else {
                out.extend_from_slice(&time.to_be_bytes());
            }
        }
        out.extend(transitions.iter().map(|(_, index)| *index));
        out.extend_from_slice(&type_records);
        out.extend_from_slice(&designations);
        out
    };
    let mut file = block(4);
    if version >= b'2' {
        file.extend(block(8));
        file.extend_from_slice(format!("\n{footer}\n").as_bytes());
    }
    file
}

fn zone(name: &str, offset: i64) -> Zone {
    Zone {
        abbreviation: name.into(),
        offset,
    }
}

fn paris() -> Vec<u8> {
    let (cet, cest) = ((3600, 0, "CET"), (7200, 1, "CEST"));
    tzif(
        b'2',
        &[(utc(2024, 3, 31, 1, 0), 1), (utc(2024, 10, 27, 1, 0), 0)],
        &[cet, cest],
        "CET-1CEST,M3.5.0,M10.5.0/3",
    )
}

#[test]
fn the_transitions_give_the_zone_and_the_footer_takes_over_after_them() {
    let file = paris();
    assert_eq!(zone_at(&file, utc(2024, 1, 10, 12, 0)), Ok(zone("CET", 3600)));
    assert_eq!(zone_at(&file, utc(2024, 7, 1, 0, 0)), Ok(zone("CEST", 7200)));
    // Past the last transition: the rule. 2026's changes are on March 29
    // and October 25 at 01:00 UTC.
    assert_eq!(zone_at(&file, utc(2026, 3, 29, 0, 59)), Ok(zone("CET", 3600)));
    assert_eq!(zone_at(&file, utc(2026, 3, 29, 1, 0)), Ok(zone("CEST", 7200)));
    assert_eq!(zone_at(&file, utc(2026, 10, 25, 0, 59)), Ok(zone("CEST", 7200)));
    assert_eq!(zone_at(&file, utc(2026, 10, 25, 1, 0)), Ok(zone("CET", 3600)));
    assert_eq!(zone_at(&file, utc(2026, 12, 1, 0, 0)), Ok(zone("CET", 3600)));
}

#[test]
fn utc_and_version_1_files_have_their_single_type() {
    let utc_file = tzif(b'2', &[], &[(0, 0, "UTC")], "UTC0");
    assert_eq!(zone_at(&utc_file, utc(2026, 12, 1, 0, 0)), Ok(zone("UTC", 0)));
    let v1 = tzif(
        0,
        &[(utc(2000, 1, 1, 0, 0), 1)],
        &[(-18000, 0, "EST"), (-14400, 1, "EDT")],
        "",
    );
    assert_eq!(zone_at(&v1, utc(1999, 6, 1, 0, 0)), Ok(zone("EST", -18000)));
    assert_eq!(zone_at(&v1, utc(2026, 6, 1, 0, 0)), Ok(zone("EDT", -14400)));
    // Version 2 without a footer: the last transition's type stays.
    let no_footer = tzif(
        b'2',
        &[(utc(2000, 1, 1, 0, 0), 1)],
        &[(0, 0, "AAA"), (19800, 0, "IST")],
        "",
    );
    assert_eq!(zone_at(&no_footer, utc(2026, 6, 1, 0, 0)), Ok(zone("IST", 19800)));
}

#[test]
fn posix_rules_of_both_hemispheres_and_quoted_names() {
    let sydney = "AEST-10AEDT,M10.1.0,M4.1.0/3";
    assert_eq!(posix_zone(sydney, utc(2026, 1, 15, 0, 0)), Ok(zone("AEDT", 39600)));
    assert_eq!(posix_zone(sydney, utc(2026, 7, 15, 0, 0)), Ok(zone("AEST", 36000)));
    // 2026-04-05 03:00 AEDT = 04-04 16:00 UTC; 2026-10-04 02:00 AEST = 10-03 16:00 UTC.
    assert_eq!(posix_zone(sydney, utc(2026, 4, 4, 15, 59)), Ok(zone("AEDT", 39600)));
    assert_eq!(posix_zone(sydney, utc(2026, 4, 4, 16, 0)), Ok(zone("AEST", 36000)));
    assert_eq!(posix_zone(sydney, utc(2026, 10, 3, 16, 0)), Ok(zone("AEDT", 39600)));
    let new_york = "EST5EDT,M3.2.0,M11.1.0";
    assert_eq!(posix_zone(new_york, utc(2026, 3, 8, 6, 59)), Ok(zone("EST", -18000)));
    assert_eq!(posix_zone(new_york, utc(2026, 3, 8, 7, 0)), Ok(zone("EDT", -14400)));
    assert_eq!(posix_zone("<+0530>-5:30", 0), Ok(zone("+0530", 19800)));
    assert_eq!(posix_zone("<-03>3", 0), Ok(zone("-03", -10800)));
    // Julian days: J60 is March 1 in every year.
    let julian = "AAA0BBB,J60/0,J305/0";
    assert_eq!(posix_zone(julian, utc(2024, 2, 29, 23, 0)), Ok(zone("AAA", 0)));
    assert_eq!(posix_zone(julian, utc(2024, 3, 1, 0, 0)), Ok(zone("BBB", 3600)));
}

#[test]
fn truncated_and_garbage_files_are_errors_never_panics() {
    let file = paris();
    for length in 0..file.len() {
        // Every prefix either fails or (cut inside the footer) still parses.
        let _ = zone_at(&file[..length], utc(2026, 7, 1, 0, 0));
    }
    assert!(zone_at(&file[..40], 0).unwrap_err().contains("truncated"));
    assert!(
        zone_at(b"not a tz file at all, not at all, no no no no", 0)
            .unwrap_err()
            .contains("TZif")
    );
    let mut huge = paris();
    huge[32..36].copy_from_slice(&u32::MAX.to_be_bytes()); // timecnt
    assert!(zone_at(&huge, 0).is_err());
    let bad_index = tzif(b'2', &[(0, 7)], &[(0, 0, "UTC")], "");
    assert!(zone_at(&bad_index, 10).unwrap_err().contains("local time type 7"));
    let no_types = tzif(b'2', &[], &[], "");
    assert!(zone_at(&no_types, 10).is_err());
    let bad_footer = tzif(b'2', &[], &[(0, 0, "UTC")], "X");
    assert!(zone_at(&bad_footer, 10).unwrap_err().contains("POSIX TZ"));
    for rule in [
        "",
        "AB0",
        "AAA",
        "AAA0BBB,M13.1.0,M1.1.0",
        "AAA0BBB,M3.6.0,M1.1.0",
        "AAA0BBB,J0,J1",
        "AAA999",
        "<AAA",
    ] {
        assert!(posix_zone(rule, 0).is_err(), "{rule:?}");
    }
    let mut seed = 0x2545_f491_u32;
    for _ in 0..2000 {
        let mut garbage = paris();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let at = usize::try_from(seed).unwrap() % garbage.len();
            garbage[at] = u8::try_from(seed >> 24).unwrap();
        }
        let _ = zone_at(&garbage, utc(2026, 7, 1, 0, 0));
    }
}

#[test]
fn the_civil_calendar_is_right_around_leap_years() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11017);
    assert_eq!(civil_year(utc(2024, 12, 31, 23, 59)), 2024);
    assert_eq!(civil_year(utc(2025, 1, 1, 0, 0)), 2025);
    assert_eq!(civil_year(-1), 1969);
    assert_eq!(weekday_of(days_from_civil(2026, 12, 1)), 2, "a Tuesday");
}
