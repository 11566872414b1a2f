//! Value generators: each appends one value, in Postgres' text input syntax, to a `String`.
//! Timestamps fall in a fixed window (not "now") so the same seed always gives the same data.

use std::fmt::Write as _;

use rand::Rng;

use super::pools;

/// Start of the timestamp window: 2024-01-01T00:00:00Z (Unix seconds).
pub const TIMESTAMP_FROM: i64 = 1_704_067_200;
/// End of the timestamp window (exclusive): 2026-01-01T00:00:00Z.
pub const TIMESTAMP_TO: i64 = 1_767_225_600;
/// Smallest `--large-text` value in bytes: over 8 KB, so the value is stored out of line (TOAST)
/// even after compression, which random letters barely allow.
pub const LARGE_TEXT_MIN_BYTES: usize = 9_000;
/// Largest `--large-text` value in bytes.
pub const LARGE_TEXT_MAX_BYTES: usize = 12_000;

/// A uniformly chosen element.
pub fn pick<T: Copy>(rng: &mut impl Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// A name chosen with probability proportional to its weight.
pub fn pick_weighted(rng: &mut impl Rng, items: &[(&'static str, u32)]) -> &'static str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (name, w) in items {
        if x < *w {
            return name;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

/// The people, place and purchase a row is about, drawn once per row so that its name and
/// email, or its merchant, category and card, agree.
#[derive(Debug, Clone, Copy)]
pub struct Persona {
    /// Given name.
    pub first: &'static str,
    /// Family name.
    pub last: &'static str,
    /// Index into [`pools::CITIES`].
    pub city: usize,
    /// Index into [`pools::MERCHANTS`].
    pub merchant: usize,
    /// Card brand.
    pub brand: &'static str,
    /// Index into [`pools::COUNTRIES`].
    pub country: usize,
    /// When the row's story happens (milliseconds since 1970, in the window): its timestamps
    /// cluster around it and `updated_at` follows it.
    pub time_ms: i64,
}

impl Persona {
    /// Draws a persona (always the same number of draws, keeping streams aligned).
    pub fn draw(rng: &mut impl Rng) -> Persona {
        Persona {
            first: pick(rng, pools::FIRST_NAMES),
            last: pick(rng, pools::LAST_NAMES),
            city: rng.random_range(0..pools::CITIES.len()),
            merchant: rng.random_range(0..pools::MERCHANTS.len()),
            brand: pick_weighted(rng, pools::CARD_BRANDS),
            country: rng.random_range(0..pools::COUNTRIES.len()),
            time_ms: window_millis(rng),
        }
    }

    /// The merchant's name and category.
    pub fn merchant(&self) -> (&'static str, &'static str) {
        pools::MERCHANTS[self.merchant]
    }
}

/// Lower-case ASCII letters of a name, for emails and user names (`Müller` -> `muller`).
fn push_ascii_lower(out: &mut String, name: &str) {
    for c in name.chars() {
        let c = match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ñ' => 'n',
            'ç' => 'c',
            c => c.to_ascii_lowercase(),
        };
        if c.is_ascii_lowercase() {
            out.push(c);
        }
    }
}

/// `Maria Garcia`.
pub fn push_full_name(out: &mut String, p: &Persona) {
    out.push_str(p.first);
    out.push(' ');
    out.push_str(p.last);
}

/// `maria.garcia@example.com`, or `maria.garcia.<token>@example.com` when it must be unique.
pub fn push_email(rng: &mut impl Rng, out: &mut String, p: &Persona, token: Option<&str>) {
    push_ascii_lower(out, p.first);
    out.push('.');
    push_ascii_lower(out, p.last);
    match token {
        Some(t) => {
            out.push('.');
            out.push_str(t);
        }
        None if rng.random_bool(0.5) => {
            let _ = write!(out, "{}", rng.random_range(1..100));
        }
        None => {}
    }
    out.push('@');
    out.push_str(pick(rng, pools::EMAIL_DOMAINS));
}

/// `mgarcia`, then `_<token>` when unique, else sometimes two digits.
pub fn push_username(rng: &mut impl Rng, out: &mut String, p: &Persona, token: Option<&str>) {
    if let Some(c) = p.first.chars().next() {
        push_ascii_lower(out, c.encode_utf8(&mut [0; 4]));
    }
    push_ascii_lower(out, p.last);
    match token {
        Some(t) => {
            out.push('_');
            out.push_str(t);
        }
        None => {
            let _ = write!(out, "{}", rng.random_range(10..100));
        }
    }
}

/// `4821 Oak Street, Springfield, IL 62704`.
pub fn push_address(rng: &mut impl Rng, out: &mut String, p: &Persona) {
    let (city, state, zip) = pools::CITIES[p.city];
    let _ = write!(
        out,
        "{} {} {}, {city}, {state} {zip}{:02}",
        rng.random_range(1..9999),
        pick(rng, pools::STREETS),
        pick(rng, pools::STREET_SUFFIXES),
        rng.random_range(1..100)
    );
}

/// `+1-555-014-2381` (the 555-01xx range is reserved for fiction).
pub fn push_phone(rng: &mut impl Rng, out: &mut String) {
    let _ = write!(
        out,
        "+1-{}-555-01{:02}",
        rng.random_range(201..990),
        rng.random_range(0..100)
    );
}

/// A masked card number with the brand's grouping: `**** **** **** 4242`, or
/// `**** ****** *4242` for Amex (15 digits).
pub fn push_masked_card(rng: &mut impl Rng, out: &mut String, brand: &str) {
    let last4 = rng.random_range(0..10_000);
    if brand == "Amex" {
        let _ = write!(out, "**** ****** *{last4:04}");
    } else {
        let _ = write!(out, "**** **** **** {last4:04}");
    }
}

/// `Ergonomic Bamboo Desk Lamp`.
pub fn push_product_name(rng: &mut impl Rng, out: &mut String) {
    out.push_str(pick(rng, pools::PRODUCT_ADJECTIVES));
    out.push(' ');
    out.push_str(pick(rng, pools::PRODUCT_MATERIALS));
    out.push(' ');
    out.push_str(pick(rng, pools::PRODUCT_NOUNS));
}

/// `min..=max` words from [`pools::WORDS`] separated by spaces.
pub fn push_words(rng: &mut impl Rng, out: &mut String, min: usize, max: usize) {
    let n = rng.random_range(min..=max);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(pick(rng, pools::WORDS));
    }
}

/// One or two sentences of prose: `Customer contacted support about the refund.`
pub fn push_prose(rng: &mut impl Rng, out: &mut String) {
    let sentences = rng.random_range(1..=2);
    for s in 0..sentences {
        if s > 0 {
            out.push(' ');
        }
        let start = out.len();
        push_words(rng, out, 4, 12);
        // Capitalise the first letter (all words are ASCII).
        if let Some(first) = out.get(start..start + 1) {
            let upper = first.to_ascii_uppercase();
            out.replace_range(start..start + 1, &upper);
        }
        out.push('.');
    }
}

/// Over 8 KB of space-separated random lower-case letters: hard to compress, so Postgres stores
/// the value out of line in the TOAST table.
pub fn push_large_text(rng: &mut impl Rng, out: &mut String) {
    let len = rng.random_range(LARGE_TEXT_MIN_BYTES..=LARGE_TEXT_MAX_BYTES);
    let start = out.len();
    out.reserve(len);
    while out.len() - start < len {
        let mut bits: u64 = rng.random();
        // 12 letters per draw (26^12 < 2^64), then a space.
        for _ in 0..12 {
            out.push(char::from(b'a' + (bits % 26) as u8));
            bits /= 26;
        }
        out.push(' ');
    }
    out.truncate(start + len);
}

/// 1 to `max` distinct tags as a Postgres array literal: `{"vip","newsletter"}` (may be `{}`).
pub fn push_tags(rng: &mut impl Rng, out: &mut String, pool: &[&str], max: usize) {
    let n = rng.random_range(0..=max.min(pool.len()));
    let mut chosen: Vec<usize> = Vec::with_capacity(n);
    while chosen.len() < n {
        let i = rng.random_range(0..pool.len());
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    out.push('{');
    for (k, i) in chosen.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        push_array_element(out, pool[*i]);
    }
    out.push('}');
}

/// A double-quoted element of an array literal, escaping `"` and `\`.
pub fn push_array_element(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A random version-4 UUID: `1b4e28ba-2fa1-41d2-883f-0016d3cca427`.
pub fn push_uuid(rng: &mut impl Rng, out: &mut String) {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

/// Days since 1970-01-01 to a civil (year, month, day) (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2024-03-05`.
pub fn push_date_days(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
}

/// A date between 1 January of `from_year` and 31 December of `to_year`.
pub fn push_date(rng: &mut impl Rng, out: &mut String, from_year: i64, to_year: i64) {
    let from = days_from_civil(from_year, 1, 1);
    let to = days_from_civil(to_year + 1, 1, 1);
    push_date_days(out, rng.random_range(from..to));
}

/// A random instant of the window, in milliseconds since 1970.
pub fn window_millis(rng: &mut impl Rng) -> i64 {
    rng.random_range(TIMESTAMP_FROM * 1000..TIMESTAMP_TO * 1000)
}

/// A timestamp in the window with milliseconds: `2024-03-05 12:34:56.789`, plus `+00` when
/// `with_zone`.
pub fn push_timestamp(rng: &mut impl Rng, out: &mut String, with_zone: bool) {
    push_timestamp_at(out, window_millis(rng), with_zone);
}

/// `2024-03-05 12:34:56.789` (`+00` when `with_zone`) of milliseconds since 1970.
pub fn push_timestamp_at(out: &mut String, millis_since_epoch: i64, with_zone: bool) {
    let secs = millis_since_epoch.div_euclid(1000);
    let millis = millis_since_epoch.rem_euclid(1000);
    push_date_days(out, secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        " {:02}:{:02}:{:02}.{millis:03}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    if with_zone {
        out.push_str("+00");
    }
}

/// `13:45:07`.
pub fn push_time(rng: &mut impl Rng, out: &mut String) {
    let s = rng.random_range(0..86_400);
    let _ = write!(out, "{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
}

/// A decimal with `scale` fraction digits from an integer count of units of 10^-scale:
/// (12345, 2) -> `123.45`; a negative scale appends zeros: (12, -2) -> `1200`.
pub fn push_scaled(out: &mut String, units: u64, scale: i32) {
    if scale <= 0 {
        let _ = write!(out, "{units}");
        for _ in 0..(-scale) {
            out.push('0');
        }
        return;
    }
    let scale = scale as usize;
    let digits = units.to_string();
    if digits.len() <= scale {
        out.push_str("0.");
        for _ in digits.len()..scale {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
}

/// 10^n saturating at `u64::MAX`.
pub fn pow10(n: u32) -> u64 {
    10u64.checked_pow(n).unwrap_or(u64::MAX)
}

/// A money amount in units of 10^-scale: log-uniform between 1 and 2,000 (most purchases are
/// small), capped below `limit` units.
pub fn money_units(rng: &mut impl Rng, scale: i32, limit: u64) -> u64 {
    let amount: f64 = (rng.random_range(0.0..(2_000f64).ln())).exp();
    let units = if scale >= 0 {
        (amount * pow10(scale as u32) as f64).round() as u64
    } else {
        (amount / pow10((-scale) as u32) as f64).round() as u64
    };
    units.clamp(1, limit.saturating_sub(1).max(1))
}

/// `0-9a-z` digits of `n`.
pub fn push_base36(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 13];
    let mut i = buf.len();
    loop {
        i -= 1;
        let d = (n % 36) as u8;
        buf[i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|b| char::from(*b)));
}

/// Transaction metadata: `{"channel": "online", "device": "ios", "mcc": 5812, ...}`.
pub fn push_tx_metadata(rng: &mut impl Rng, out: &mut String, p: &Persona) {
    let (_, category) = p.merchant();
    let _ = write!(
        out,
        "{{\"channel\": \"{}\", \"device\": \"{}\", \"mcc\": {}, \"ip\": \"203.0.113.{}\", \
         \"three_ds\": {}}}",
        pick(rng, pools::CHANNELS),
        pick(rng, pools::DEVICES),
        pools::mcc(category),
        rng.random_range(1..255),
        rng.random_bool(0.7)
    );
}

/// User preferences: `{"newsletter": true, "theme": "dark", "language": "en", ...}`.
pub fn push_preferences(rng: &mut impl Rng, out: &mut String) {
    let _ = write!(
        out,
        "{{\"newsletter\": {}, \"theme\": \"{}\", \"language\": \"{}\", \
         \"notifications\": {{\"email\": {}, \"sms\": {}}}}}",
        rng.random_bool(0.4),
        pick(rng, pools::THEMES),
        pick(rng, pools::LANGUAGES),
        rng.random_bool(0.8),
        rng.random_bool(0.2)
    );
}

/// Product attributes: `{"color": "navy", "weight_kg": 1.25, "warranty_months": 12}`.
pub fn push_attributes(rng: &mut impl Rng, out: &mut String) {
    let _ = write!(
        out,
        "{{\"color\": \"{}\", \"weight_kg\": ",
        pick(rng, pools::COLORS)
    );
    push_scaled(out, rng.random_range(5..5_000), 2);
    let _ = write!(
        out,
        ", \"warranty_months\": {}}}",
        pick(rng, &[0, 6, 12, 24, 36])
    );
}

/// Any JSON object: `{"source": "generate-data", "score": 42, "flag": true, "note": "..."}`.
pub fn push_json_object(rng: &mut impl Rng, out: &mut String) {
    let _ = write!(
        out,
        "{{\"source\": \"generate-data\", \"score\": {}, \"flag\": {}, \"note\": \"",
        rng.random_range(0..1000),
        rng.random_bool(0.5)
    );
    push_words(rng, out, 1, 4);
    out.push_str("\"}");
}

/// Keeps at most `max` characters of `out[start..]`, trimming trailing spaces after a cut.
pub fn truncate_chars(out: &mut String, start: usize, max: usize) {
    if out.len() - start <= max {
        return; // byte length bounds character length
    }
    if let Some((cut, _)) = out[start..].char_indices().nth(max) {
        out.truncate(start + cut);
        let trimmed = out[start..].trim_end().len();
        out.truncate(start + trimmed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::row_rng;

    fn with<F: FnMut(&mut rand_chacha::ChaCha8Rng, &mut String)>(seed: u64, mut f: F) -> String {
        let mut rng = row_rng(seed, 0, 0, 0);
        let mut s = String::new();
        f(&mut rng, &mut s);
        s
    }

    #[test]
    fn masked_cards_show_only_the_last_four_digits() {
        for seed in 0..50 {
            let visa = with(seed, |r, s| push_masked_card(r, s, "Visa"));
            let b = visa.as_bytes();
            assert_eq!(visa.len(), 19, "{visa}");
            assert_eq!(&visa[..15], "**** **** **** ");
            assert!(b[15..].iter().all(u8::is_ascii_digit), "{visa}");
            let amex = with(seed, |r, s| push_masked_card(r, s, "Amex"));
            assert_eq!(amex.len(), 17, "{amex}");
            assert_eq!(&amex[..13], "**** ****** *");
            assert!(amex.as_bytes()[13..].iter().all(u8::is_ascii_digit));
        }
    }

    #[test]
    fn dates_round_trip_and_timestamps_stay_in_the_window() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2024, 12, 31), (1950, 3, 1)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(days_from_civil(2024, 1, 1) * 86_400, TIMESTAMP_FROM);
        assert_eq!(days_from_civil(2026, 1, 1) * 86_400, TIMESTAMP_TO);
        for seed in 0..200 {
            let ts = with(seed, |r, s| push_timestamp(r, s, true));
            assert_eq!(ts.len(), "2024-03-05 12:34:56.789+00".len(), "{ts}");
            assert!(ts.starts_with("2024-") || ts.starts_with("2025-"), "{ts}");
            assert!(ts.ends_with("+00"));
        }
        let date = with(1, |r, s| push_date(r, s, 1950, 2006));
        let year: i64 = date[..4].parse().unwrap();
        assert!((1950..=2006).contains(&year), "{date}");
    }

    #[test]
    fn decimals_have_exactly_the_scale() {
        let f = |units, scale| {
            let mut s = String::new();
            push_scaled(&mut s, units, scale);
            s
        };
        assert_eq!(f(12_345, 2), "123.45");
        assert_eq!(f(5, 2), "0.05");
        assert_eq!(f(0, 3), "0.000");
        assert_eq!(f(7, 0), "7");
        assert_eq!(f(12, -2), "1200");
        for seed in 0..200 {
            let mut rng = row_rng(seed, 1, 1, 0);
            let units = money_units(&mut rng, 2, pow10(7));
            assert!((100..=200_000).contains(&units), "{units}");
            assert!(money_units(&mut rng, 2, 500) < 500);
        }
    }

    #[test]
    fn uuids_are_version_4() {
        let u = with(3, push_uuid);
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4', "{u}");
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{u}");
        assert_ne!(u, with(4, push_uuid));
    }

    #[test]
    fn people_values_agree_with_the_persona() {
        let mut rng = row_rng(11, 2, 3, 0);
        let p = Persona {
            first: "Tomás",
            last: "Müller",
            ..Persona::draw(&mut rng)
        };
        let mut s = String::new();
        push_email(&mut rng, &mut s, &p, Some("42"));
        assert!(
            s.starts_with("tomas.muller.42@") && s.contains("example."),
            "{s}"
        );
        s.clear();
        push_username(&mut rng, &mut s, &p, Some("1z"));
        assert_eq!(s, "tmuller_1z");
        s.clear();
        push_full_name(&mut s, &p);
        assert_eq!(s, "Tomás Müller");
    }

    #[test]
    fn large_text_is_over_8_kb_and_text_is_truncated_by_characters() {
        let t = with(5, push_large_text);
        assert!(t.len() > 8 * 1024 && t.len() <= LARGE_TEXT_MAX_BYTES);
        assert!(t.bytes().all(|b| b == b' ' || b.is_ascii_lowercase()));
        let mut s = "prefix:ééé ab".to_string();
        truncate_chars(&mut s, 7, 4);
        assert_eq!(s, "prefix:ééé");
        let mut s = "abc def".to_string();
        truncate_chars(&mut s, 0, 4);
        assert_eq!(s, "abc", "trailing space trimmed");
    }

    #[test]
    fn base36_and_tags() {
        let mut s = String::new();
        push_base36(&mut s, 0);
        s.push(' ');
        push_base36(&mut s, 36 * 36 + 35);
        s.push(' ');
        push_base36(&mut s, u64::MAX);
        assert_eq!(s, "0 10z 3w5e11264sgsf");
        let tags = with(9, |r, s| push_tags(r, s, pools::USER_TAGS, 3));
        assert!(tags.starts_with('{') && tags.ends_with('}'), "{tags}");
        let mut e = String::new();
        push_array_element(&mut e, "a\"b\\c");
        assert_eq!(e, "\"a\\\"b\\\\c\"");
    }
}
