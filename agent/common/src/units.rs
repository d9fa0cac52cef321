//! Byte amounts written by people: `512`, `64KiB`, `2GiB`. Shared by the
//! orchestrator's configuration and the hint socket, so both read the same
//! spellings the same way.

/// Parses "512", "64KiB", "2GiB", "1.5TiB" (binary units; "k", "M", "G"
/// are accepted as the same binary units, as the kernel's own files do).
pub fn parse_bytes(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not an amount (e.g. 512MiB, 2GiB)"))?;
    let scale = match unit.trim() {
        "" | "B" => 1.0,
        "k" | "K" | "KiB" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use KiB, MiB, GiB, TiB)"
            ));
        }
    };
    Ok(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_units() {
        assert_eq!(parse_bytes("512").unwrap(), 512.0);
        assert_eq!(parse_bytes("64KiB").unwrap(), 65536.0);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(parse_bytes(" 1.5 M ").unwrap(), 1.5 * 1024.0 * 1024.0);
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        for bad in ["", "-1", "1e9", "GiB", "2 GB", "1..2K"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} accepted");
        }
    }
}
