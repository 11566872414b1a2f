//! The JSON form of a change event ([`super::json`]) written straight from the message bytes,
//! without building a [`super::ChangeEvent`]: what `tail -o json` does for each message it can.
//!
//! Reading a backlog, `tail` is bound by how much CPU each message costs next to the broker on
//! the same cores. Decoding into rows of [`Value`]s and serializing them again costs about
//! 2.7 µs a message of the bench stream; this costs about 1.2 µs (`decode_throughput`).
//!
//! It covers the common message only: a row change (`c`, `r`, `u`, `d`) in the JSON converter's
//! layout whose value (and key) schema is already cached, fields in schema order. For anything
//! else it declines — returns `None`, and the caller drops what it wrote and decodes the message
//! the usual way, which also gives the error of a bad message. Declining is always safe, so the
//! scanner is stricter than serde_json, never laxer.
//!
//! The values keep one meaning: each is converted by the decoder's own seed ([`ValueSeed`]) and
//! written by serializing the [`Value`] it gives, except where the bytes as sent are exactly what
//! that would write — `null`, booleans, integers of plain integer columns, strings without
//! escapes of plain text columns — which are copied. Unit and property tests compare both
//! writers byte for byte on every fixture and on mutated messages.

use serde::de::{DeserializeSeed, Visitor};

use super::decode::{Cx, ValueSeed};
use super::schema::{ConnectSchema, ConnectType, EnvelopePlan, LogicalType, Role};
use super::{Column, MessageRef, Op, Value};

/// Deepest nesting the scanner follows (serde_json stops at 128).
const MAX_DEPTH: usize = 100;

/// Scratch buffers reused from message to message (the rows come before `op` in the payload but
/// after it in the line).
#[derive(Debug, Default)]
pub(super) struct Scratch {
    before: Vec<u8>,
    after: Vec<u8>,
}

/// Appends the JSON line of a row change whose payload (`payload`, cut out of the value after
/// its cached schema) has the envelope `plan`; `key` is the key's cached schema and payload.
/// `None`: declined, `out` may hold a partial line (the caller truncates it).
pub(super) fn envelope(
    plan: &EnvelopePlan,
    payload: &[u8],
    key: Option<(&ConnectSchema, &[u8])>,
    msg: &MessageRef<'_>,
    cx: &Cx<'_>,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Option<()> {
    let fields = plan.schema.fields();
    let mut scan = Scan::new(payload);
    if scan.peek()? != b'{' {
        return None;
    }
    let (mut before, mut after) = (false, false);
    let mut op = None;
    let mut source = Source::default();
    scan.fields(fields, |scan, key| {
        let Some(i) = key.index()? else {
            return scan.skip(1);
        };
        let schema = fields[i].schema();
        match plan.roles[i] {
            Role::Before => {
                scratch.before.clear();
                before = row(scan, schema, true, cx, 1, &mut scratch.before)?;
            }
            Role::After => {
                scratch.after.clear();
                after = row(scan, schema, true, cx, 1, &mut scratch.after)?;
            }
            Role::Source => source = Source::read(scan, schema)?,
            Role::Op => {
                op = match convert(scan, schema, false, cx, 1)? {
                    Value::String(code) => match Op::from_code(&code)? {
                        op @ (Op::Create | Op::Read | Op::Update | Op::Delete) => Some(op),
                        Op::Truncate | Op::Message => return None,
                    },
                    _ => return None,
                };
            }
            // Not part of the line, but the decoder would refuse them if they were wrong.
            Role::TsMs | Role::Transaction => {
                convert(scan, schema, false, cx, 1)?;
            }
            // A logical message is written with its content: leave it to the decoder.
            Role::Message => scan.literal(b"null")?,
            Role::Other => scan.skip(1)?,
        }
        Some(())
    })?;
    if !scan.at_end() {
        return None;
    }
    let op = op?;

    out.extend_from_slice(br#"{"op":""#);
    out.extend_from_slice(op.code().as_bytes());
    out.extend_from_slice(br#"","table":"#);
    match (source.schema, source.table) {
        (Some(schema), Some(table)) => {
            out.push(b'"');
            out.extend_from_slice(schema);
            out.push(b'.');
            out.extend_from_slice(table);
            out.push(b'"');
        }
        (None, Some(table)) => quoted(out, table),
        _ => json_str(out, msg.topic)?,
    }
    out.extend_from_slice(br#","key":"#);
    match key {
        None => out.extend_from_slice(b"null"),
        Some((schema, payload)) => {
            let mut scan = Scan::new(payload);
            // A key is a struct (decoded without TOAST handling); anything else is rare enough.
            if schema.connect_type() != ConnectType::Struct
                || *schema.logical() == LogicalType::VariableScaleDecimal
            {
                return None;
            }
            if !row(&mut scan, schema, false, cx, 0, out)? {
                out.extend_from_slice(b"null");
            }
            if !scan.at_end() {
                return None;
            }
        }
    }
    out.extend_from_slice(br#","before":"#);
    out.extend_from_slice(if before { &scratch.before } else { b"null" });
    out.extend_from_slice(br#","after":"#);
    out.extend_from_slice(if after { &scratch.after } else { b"null" });
    out.extend_from_slice(br#","source":{"ts_ms":"#);
    out.extend_from_slice(source.ts_ms.unwrap_or(b"null"));
    out.extend_from_slice(br#","lsn":"#);
    out.extend_from_slice(source.lsn.unwrap_or(b"null"));
    out.extend_from_slice(br#","tx_id":"#);
    out.extend_from_slice(source.tx_id.unwrap_or(b"null"));
    out.extend_from_slice(br#","snapshot":"#);
    let snapshot = source.snapshot.is_some_and(|s| s != b"false");
    out.extend_from_slice(if snapshot { b"true" } else { b"false" });
    for (name, text) in [
        (&br#","database":"#[..], source.database),
        (br#","schema":"#, source.schema),
        (br#","table":"#, source.table),
    ] {
        out.extend_from_slice(name);
        match text {
            Some(text) => quoted(out, text),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(br#"},"kafka":{"topic":"#);
    json_str(out, msg.topic)?;
    out.extend_from_slice(br#","partition":"#);
    integer(out, i64::from(msg.partition));
    out.extend_from_slice(br#","offset":"#);
    integer(out, msg.offset);
    out.extend_from_slice(br#","timestamp_ms":"#);
    match msg.timestamp_ms {
        Some(ts) => integer(out, ts),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}}\n");
    Some(())
}

/// An object key met by [`Scan::fields`].
#[derive(Clone, Copy)]
enum Key<'b> {
    /// One of the fields (a name written without escapes).
    At(usize),
    /// Another name.
    Other(Text<'b>),
}

impl<'b> Key<'b> {
    /// The key's place among the fields, `Some(None)` for another name. `None` (decline) for a
    /// name with escapes (it may be a field's after all), or one that is not UTF-8 (the decoder
    /// would refuse it).
    fn index(self) -> Option<Option<usize>> {
        match self {
            Key::At(i) => Some(Some(i)),
            Key::Other(name) => (!name.escaped && name.is_utf8()).then_some(None),
        }
    }

    /// The key's name when it has no escapes (`None`: it has some, or is not UTF-8).
    fn name<'a>(self, fields: &'a [Column]) -> Option<&'a [u8]>
    where
        'b: 'a,
    {
        match self {
            Key::At(i) => fields.get(i).map(|c| c.name().as_bytes()),
            Key::Other(name) => (!name.escaped && name.is_utf8()).then_some(name.raw),
        }
    }
}

/// Writes a row (`before`, `after`, a key) as serializing the decoded [`super::Row`] does: every
/// column in schema order, missing ones NULL. Returns whether it was an object (`null`: false,
/// nothing written). `columns`: TOAST-aware table columns.
fn row(
    scan: &mut Scan<'_>,
    schema: &ConnectSchema,
    columns: bool,
    cx: &Cx<'_>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Option<bool> {
    if scan.peek()? == b'n' {
        scan.literal(b"null")?;
        return Some(false);
    }
    if schema.connect_type() != ConnectType::Struct {
        return None;
    }
    let fields = schema.fields();
    let mut next = 0;
    out.push(b'{');
    scan.fields(fields, |scan, key| {
        let Some(i) = key.index()? else {
            return scan.skip(depth + 1);
        };
        // Out of order or repeated: the decoder places it; rare, leave it to the decoder.
        if i < next {
            return None;
        }
        nulls(out, fields, next..i);
        member_name(out, i, &fields[i]);
        value(scan, fields[i].schema(), columns, cx, depth + 1, out)?;
        next = i + 1;
        Some(())
    })?;
    nulls(out, fields, next..fields.len());
    out.push(b'}');
    Some(true)
}

/// Fields missing from the object: NULL, as the decoder has them.
fn nulls(out: &mut Vec<u8>, fields: &[Column], missing: std::ops::Range<usize>) {
    for (index, column) in fields
        .iter()
        .enumerate()
        .take(missing.end)
        .skip(missing.start)
    {
        member_name(out, index, column);
        out.extend_from_slice(b"null");
    }
}

/// `"name":`, after a comma unless it is the first member.
fn member_name(out: &mut Vec<u8>, index: usize, column: &Column) {
    if index > 0 {
        out.push(b',');
    }
    out.extend_from_slice(column.json_name().as_bytes());
    out.push(b':');
}

/// Writes one value as serializing its decoded [`Value`] does. A string without escapes of a
/// plain text column is copied as sent (that is what serializing it writes), saving the
/// allocation; every other value is converted by the decoder's seed and serialized.
fn value(
    scan: &mut Scan<'_>,
    schema: &ConnectSchema,
    column: bool,
    cx: &Cx<'_>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Option<()> {
    if scan.peek()? == b'"'
        && schema.connect_type() == ConnectType::String
        && *schema.logical() == LogicalType::None
    {
        let at = scan.i;
        let text = scan.string()?;
        if !text.escaped {
            if column && text.str()? == cx.opts.placeholder {
                return None; // unavailable: listed apart, leave it to the decoder
            }
            out.extend_from_slice(&scan.b[at..scan.i]);
            return Some(());
        }
        scan.i = at;
    }
    match convert(scan, schema, column, cx, depth)? {
        Value::Unavailable => None,
        value => serde_json::to_writer(&mut *out, &value).ok(),
    }
}

/// Converts one value with the decoder's seed: scalars through its visitor, the same calls
/// serde_json makes; strings with escapes, fractions and nested values through serde_json
/// itself, over the value's bytes.
fn convert(
    scan: &mut Scan<'_>,
    schema: &ConnectSchema,
    column: bool,
    cx: &Cx<'_>,
    depth: usize,
) -> Option<Value> {
    let seed = ValueSeed {
        schema: Some(schema),
        column,
        cx,
    };
    type E = serde_json::Error;
    match scan.peek()? {
        b'n' => {
            scan.literal(b"null")?;
            seed.visit_unit::<E>().ok()
        }
        b't' => {
            scan.literal(b"true")?;
            seed.visit_bool::<E>(true).ok()
        }
        b'f' => {
            scan.literal(b"false")?;
            seed.visit_bool::<E>(false).ok()
        }
        b'"' => {
            let at = scan.i;
            let text = scan.string()?;
            if text.escaped {
                let unescaped: String = serde_json::from_slice(&scan.b[at..scan.i]).ok()?;
                seed.visit_str::<E>(&unescaped).ok()
            } else {
                seed.visit_str::<E>(text.str()?).ok()
            }
        }
        b'-' | b'0'..=b'9' => {
            let token = scan.number()?;
            match plain_integer(token) {
                Some(v) => seed.visit_i64::<E>(v).ok(),
                None => deserialize(token, seed),
            }
        }
        b'{' | b'[' => deserialize(scan.token(depth)?, seed),
        _ => None,
    }
}

fn deserialize(token: &[u8], seed: ValueSeed<'_>) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(token);
    let value = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

/// The `i64` of a number token (from [`Scan::number`]) that serde_json reads as that `i64` and
/// that serializing it writes back unchanged: no fraction or exponent, not `-0` (a float to
/// serde_json), in range.
fn plain_integer(token: &[u8]) -> Option<i64> {
    let (negative, digits) = match token.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, token),
    };
    if digits.len() > 19 || digits == b"0" && negative {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(d - b'0');
    }
    if negative {
        0_i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}

/// The `source` fields the line shows, as the bytes sent (validated as the decoder would).
#[derive(Default)]
struct Source<'b> {
    ts_ms: Option<&'b [u8]>,
    lsn: Option<&'b [u8]>,
    tx_id: Option<&'b [u8]>,
    snapshot: Option<&'b [u8]>,
    database: Option<&'b [u8]>,
    schema: Option<&'b [u8]>,
    table: Option<&'b [u8]>,
}

impl<'b> Source<'b> {
    /// Reads the source block (`null` is an empty one). Like the decoder, it goes by the names
    /// of the fields, whatever `schema` says; the schema only tells the order to expect.
    fn read(scan: &mut Scan<'b>, schema: &ConnectSchema) -> Option<Source<'b>> {
        let mut source = Source::default();
        if scan.peek()? == b'n' {
            scan.literal(b"null")?;
            return Some(source);
        }
        let fields = schema.fields();
        scan.fields(fields, |scan, key| {
            match key.name(fields)? {
                b"ts_ms" => source.ts_ms = int64(scan)?,
                b"lsn" => source.lsn = int64(scan)?,
                b"txId" => source.tx_id = int64(scan)?,
                b"ts_us" | b"ts_ns" | b"xmin" => {
                    int64(scan)?;
                }
                b"snapshot" => source.snapshot = text(scan, true)?,
                b"db" => source.database = text(scan, true)?,
                b"schema" => source.schema = text(scan, true)?,
                b"table" => source.table = text(scan, true)?,
                b"version" | b"connector" | b"name" | b"sequence" => {
                    text(scan, false)?;
                }
                _ => scan.skip(2)?,
            }
            Some(())
        })?;
        Some(source)
    }
}

/// A source int64 field: `null` or an integer, as its bytes.
fn int64<'b>(scan: &mut Scan<'b>) -> Option<Option<&'b [u8]>> {
    if scan.peek()? == b'n' {
        scan.literal(b"null")?;
        return Some(None);
    }
    let token = scan.number()?;
    plain_integer(token)?;
    Some(Some(token))
}

/// A source text field: `null` or a string. A `shown` text is copied, so it may not have escapes
/// (then its bytes are what serializing it writes); another one (`version`, `sequence`...) only
/// has to be valid, and is not returned.
fn text<'b>(scan: &mut Scan<'b>, shown: bool) -> Option<Option<&'b [u8]>> {
    if scan.peek()? == b'n' {
        scan.literal(b"null")?;
        return Some(None);
    }
    let at = scan.i;
    let text = scan.string()?;
    if !text.escaped {
        return text.is_utf8().then_some(Some(text.raw));
    }
    if shown {
        return None;
    }
    // Valid when serde_json reads it as a string, as the decoder does: with only one-letter
    // escapes (checked by the scanner), when the rest is UTF-8.
    if !text.raw.windows(2).any(|w| w == b"\\u") {
        return text.is_utf8().then_some(None);
    }
    serde_json::from_slice::<String>(&scan.b[at..scan.i]).ok()?;
    Some(None)
}

/// Writes the bytes of a string without escapes between quotes.
fn quoted(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

/// Writes `text` as a JSON string.
fn json_str(out: &mut Vec<u8>, text: &str) -> Option<()> {
    serde_json::to_writer(&mut *out, text).ok()
}

fn integer(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Scanner

/// Whether any of the eight bytes of `v` is `"`, `\` or below 0x20 (the classic "has a zero
/// byte" / "has a byte below n" word tricks; exact for presence).
fn has_special(v: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = zero_byte(v ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(v ^ (ONES * u64::from(b'\\')));
    let control = v.wrapping_sub(ONES * 0x20) & !v & HIGH;
    quote | backslash | control != 0
}

/// A string as found: the bytes between the quotes, whether they hold escapes, and whether
/// they are all ASCII.
#[derive(Clone, Copy)]
struct Text<'b> {
    raw: &'b [u8],
    escaped: bool,
    ascii: bool,
}

impl<'b> Text<'b> {
    /// The text of a string without escapes, if it is UTF-8.
    fn str(self) -> Option<&'b str> {
        std::str::from_utf8(self.raw).ok()
    }

    /// Is UTF-8 (checked only when not all ASCII).
    fn is_utf8(self) -> bool {
        self.ascii || std::str::from_utf8(self.raw).is_ok()
    }
}

/// A strict JSON scanner over a byte slice; every method returns `None` on anything it does not
/// accept.
struct Scan<'b> {
    b: &'b [u8],
    i: usize,
}

impl<'b> Scan<'b> {
    fn new(b: &'b [u8]) -> Self {
        Self { b, i: 0 }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace (the cursor is left on it).
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Only whitespace is left.
    fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.ws();
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string: no raw control characters, escapes well formed (what serde_json checks of a
    /// string it skips; UTF-8 is checked by the callers that use the text).
    fn string(&mut self) -> Option<Text<'b>> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        // Every byte ORed: no high bit means ASCII. Eight bytes at a time while none of them is
        // a quote, a backslash or a control character (strings here are short: names, emails,
        // timestamps; a vectorised search costs more to set up).
        let mut high = 0_u64;
        loop {
            while let Some(chunk) = self.b.get(self.i..self.i + 8) {
                let mut word = [0; 8];
                word.copy_from_slice(chunk);
                let v = u64::from_le_bytes(word);
                if has_special(v) {
                    break;
                }
                high |= v;
                self.i += 8;
            }
            // Byte by byte up to the special one (within eight, unless near the end).
            let mut c = *self.b.get(self.i)?;
            while c != b'"' && c != b'\\' && c >= 0x20 {
                high |= u64::from(c);
                self.i += 1;
                c = *self.b.get(self.i)?;
            }
            if c < 0x20 {
                return None;
            }
            if c == b'"' {
                let raw = &self.b[start..self.i];
                self.i += 1;
                let ascii = high & 0x8080_8080_8080_8080 == 0;
                return Some(Text {
                    raw,
                    escaped,
                    ascii,
                });
            }
            escaped = true;
            match self.b.get(self.i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                b'u' => {
                    let hex = self.b.get(self.i + 2..self.i + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.i += 6;
                }
                _ => return None,
            }
        }
    }

    /// A number, as its bytes (JSON's grammar).
    fn number(&mut self) -> Option<&'b [u8]> {
        self.ws();
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(&self.b[start..self.i])
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
        self.i - start
    }

    /// Calls `member` with each key of an object, the cursor on its value (which `member`
    /// consumes).
    fn object(&mut self, mut member: impl FnMut(&mut Self, Text<'b>) -> Option<()>) -> Option<()> {
        self.fields(&[], |scan, key| match key {
            Key::Other(name) => member(scan, name),
            // Without fields no key is expected.
            Key::At(_) => None,
        })
    }

    /// [`Scan::object`] for a struct with `fields`: the key expected next (the one after the
    /// last known one: the converter writes fields in schema order) is recognised by comparing
    /// its bytes, without scanning it as a string.
    fn fields(
        &mut self,
        fields: &[Column],
        mut member: impl FnMut(&mut Self, Key<'b>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        let mut next = 0;
        loop {
            self.ws();
            let key = match fields.get(next) {
                Some(c) if self.b[self.i..].starts_with(c.json_name().as_bytes()) => {
                    self.i += c.json_name().len();
                    Key::At(next)
                }
                _ => {
                    let name = self.string()?;
                    match fields.iter().position(|c| c.name().as_bytes() == name.raw) {
                        Some(i) if !name.escaped => Key::At(i),
                        _ => Key::Other(name),
                    }
                }
            };
            if let Key::At(i) = key {
                next = i + 1;
            }
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Skips one value at nesting `depth`.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.object(|scan, _| scan.skip(depth + 1)),
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(|_| ()),
        }
    }

    /// Skips one value and returns its bytes.
    fn token(&mut self, depth: usize) -> Option<&'b [u8]> {
        self.ws();
        let start = self.i;
        self.skip(depth)?;
        Some(&self.b[start..self.i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_special_finds_quotes_backslashes_and_control_bytes_anywhere_in_a_word() {
        for byte in 0..=255_u8 {
            let special = byte == b'"' || byte == b'\\' || byte < 0x20;
            for at in 0..8 {
                for fill in [b'a', 0xc3, 0x7f, b' '] {
                    let mut word = [fill; 8];
                    word[at] = byte;
                    assert_eq!(
                        has_special(u64::from_le_bytes(word)),
                        special,
                        "byte {byte:#04x} at {at} among {fill:#04x}"
                    );
                }
            }
        }
    }

    #[test]
    fn strings_are_scanned_with_their_escapes_and_whether_they_are_ascii() {
        let cases: &[(&str, &str, bool, bool)] = &[
            (r#""""#, "", false, true),
            (r#""short""#, "short", false, true),
            (
                r#""user24936@example.com""#,
                "user24936@example.com",
                false,
                true,
            ),
            (
                r#""a long text of more than eight bytes, ünïcödé at the end""#,
                "a long text of more than eight bytes, ünïcödé at the end",
                false,
                false,
            ),
            (r#""ü""#, "ü", false, false),
            (
                r#""with \"quotes\" and \\ \u00e9 \n""#,
                r#"with \"quotes\" and \\ \u00e9 \n"#,
                true,
                true,
            ),
        ];
        for (json, raw, escaped, ascii) in cases {
            let mut scan = Scan::new(json.as_bytes());
            let text = scan.string().unwrap_or_else(|| panic!("{json}"));
            assert_eq!(text.raw, raw.as_bytes(), "{json}");
            assert_eq!((text.escaped, text.ascii), (*escaped, *ascii), "{json}");
            assert!(scan.at_end(), "{json}");
        }
        for bad in [
            "\"no end",
            "\"tab\there\"",
            r#""\x""#,
            r#""\u12g4""#,
            r#""\u12"#,
        ] {
            assert!(Scan::new(bad.as_bytes()).string().is_none(), "{bad}");
        }
    }
}
