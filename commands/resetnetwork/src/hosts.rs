//! `/etc/hosts`, rewritten as the legacy agent did (§3.8.2, §8.4): the
//! first IPv4 and first IPv6 address of every interface get the hostname;
//! a line that named one of them otherwise is commented out and replaced;
//! every other line stays. The addresses no line had are appended in a
//! fixed order (IPv4 by interface name, then IPv6; the legacy order was a
//! set's).

use std::net::IpAddr;

use crate::config::Interfaces;

pub const PATH: &str = "/etc/hosts";

/// The addresses that get the hostname.
pub fn addresses(interfaces: &Interfaces) -> Vec<IpAddr> {
    let ipv4 = interfaces
        .values()
        .filter_map(|interface| interface.ip4s.first().map(|ip| IpAddr::V4(ip.address)));
    let ipv6 = interfaces
        .values()
        .filter_map(|interface| interface.ip6s.first().map(|ip| IpAddr::V6(ip.address)));
    ipv4.chain(ipv6).collect()
}

/// The new `/etc/hosts` from the old text.
pub fn rewrite(old: &str, addresses: &[IpAddr], hostname: &str) -> String {
    let mut remaining: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    let mut out = String::new();
    for line in old.lines() {
        let line = line.trim();
        let (config, comment) = match line.split_once('#') {
            Some((config, rest)) => (config.trim(), format!("\t#{rest}")),
            None => (line, String::new()),
        };
        let words: Vec<&str> = config.split_whitespace().collect();
        let Some(position) = words
            .first()
            .and_then(|ip| remaining.iter().position(|address| address == ip))
        else {
            out.push_str(&format!("{line}\n"));
            continue;
        };
        let ip = remaining.remove(position);
        let names = &words[1..];
        let replaced = match names {
            [name] if *name != hostname => Some(hostname.to_owned()),
            [first, second] if first.contains('.') != second.contains('.') => {
                let swap = |name: &str| {
                    if name.contains('.') {
                        name.to_owned()
                    } else {
                        hostname.to_owned()
                    }
                };
                Some(format!("{} {}", swap(first), swap(second)))
            }
            _ => None,
        };
        match replaced {
            Some(names) => out.push_str(&format!("# {line}\t# Removed by nova-agent\n{ip}\t{names}{comment}\n")),
            None => out.push_str(&format!("{line}\n")),
        }
    }
    for ip in remaining {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(input: &str) -> String {
        rewrite(input, &["192.0.2.1".parse().unwrap()], "example")
    }

    #[test]
    fn the_legacy_vectors_are_exact() {
        let cases = [
            ("", "192.0.2.1\texample\n"),
            ("192.0.2.2\tother", "192.0.2.2\tother\n192.0.2.1\texample\n"),
            (
                "192.0.2.1\toldname",
                "# 192.0.2.1\toldname\t# Removed by nova-agent\n192.0.2.1\texample\n",
            ),
            (
                "192.0.2.1\toldname oldname.example.com",
                "# 192.0.2.1\toldname oldname.example.com\t# Removed by nova-agent\n192.0.2.1\texample oldname.example.com\n",
            ),
            (
                "192.0.2.1\toldname\n192.0.2.2\tother",
                "# 192.0.2.1\toldname\t# Removed by nova-agent\n192.0.2.1\texample\n192.0.2.2\tother\n",
            ),
            (
                "192.0.2.1\toldname # comment",
                "# 192.0.2.1\toldname # comment\t# Removed by nova-agent\n192.0.2.1\texample\t# comment\n",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(example(input), expected, "{input:?}");
        }
    }

    #[test]
    fn the_end_to_end_vector_is_exact() {
        let interfaces = crate::config::tests::vector();
        let text = rewrite(
            "127.0.0.1\tlocalhost\n104.130.169.159\told-name\n",
            &addresses(&interfaces),
            "test-server",
        );
        assert_eq!(
            text,
            "127.0.0.1\tlocalhost\n# 104.130.169.159\told-name\t# Removed by nova-agent\n104.130.169.159\ttest-server\n10.176.195.183\ttest-server\n2001:4802:7803:104:be76:4eff:fe20:5eb2\ttest-server\n"
        );
    }

    #[test]
    fn a_line_already_right_and_later_lines_for_the_same_ip_stay() {
        let text = example("192.0.2.1\texample\n192.0.2.1\tsomething-else\n\n# note\n");
        assert_eq!(text, "192.0.2.1\texample\n192.0.2.1\tsomething-else\n\n# note\n");
    }
}
