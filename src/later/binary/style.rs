//! The session's DateStyle, read from its ParameterStatus value ("ISO, MDY").

/// DateStyle's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOut {
    Iso,
    Sql,
    Postgres,
    German,
}

/// DateStyle's field order (used by the SQL and Postgres formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOrder {
    Dmy,
    Mdy,
    Ymd,
}

/// Reads a DateStyle value the way PostgreSQL's check_datestyle does: comma- or
/// space-separated words, case-insensitive; unknown words are ignored, missing parts
/// take the defaults (ISO, MDY).
pub fn parse_date_style(s: &str) -> (DateOut, DateOrder) {
    let mut out = DateOut::Iso;
    let mut order = None;
    let mut german = false;
    for word in s
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        match word.to_ascii_lowercase().as_str() {
            "iso" => out = DateOut::Iso,
            "sql" => out = DateOut::Sql,
            "postgres" => out = DateOut::Postgres,
            "german" => {
                out = DateOut::German;
                german = true;
            }
            "ymd" => order = Some(DateOrder::Ymd),
            "dmy" | "euro" | "european" => order = Some(DateOrder::Dmy),
            "mdy" | "us" | "noneuro" | "noneuropean" => order = Some(DateOrder::Mdy),
            _ => {}
        }
    }
    let order = order.unwrap_or(if german {
        DateOrder::Dmy
    } else {
        DateOrder::Mdy
    });
    (out, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_parameter_status_values() {
        assert_eq!(parse_date_style("ISO, MDY"), (DateOut::Iso, DateOrder::Mdy));
        assert_eq!(parse_date_style("SQL, DMY"), (DateOut::Sql, DateOrder::Dmy));
        assert_eq!(
            parse_date_style("Postgres, YMD"),
            (DateOut::Postgres, DateOrder::Ymd)
        );
        assert_eq!(
            parse_date_style("German, DMY"),
            (DateOut::German, DateOrder::Dmy)
        );
        assert_eq!(
            parse_date_style("german"),
            (DateOut::German, DateOrder::Dmy)
        );
        assert_eq!(parse_date_style(""), (DateOut::Iso, DateOrder::Mdy));
        assert_eq!(parse_date_style("sql,euro"), (DateOut::Sql, DateOrder::Dmy));
    }
}
