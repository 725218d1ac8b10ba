//! AMF0 values (Adobe "Action Message Format -- AMF 0" specification) for
//! RTMP commands and data messages.
//!
//! `rml_amf0::deserialize` recurses without a depth limit (nested objects
//! overflow the stack and kill the process), stops silently at a top-level
//! object-end byte and rejects Date, long string and typed object. So we
//! decode with our own [`Reader`]: it produces [`Amf0Value`]s, nests at most
//! [`MAX_DEPTH`] levels, decodes at most [`MAX_VALUES`] values per message,
//! never allocates more than the input can fill, and understands every AMF0
//! marker RTMP peers send:
//!
//! | marker (AMF0 §2.x) | becomes |
//! | --- | --- |
//! | Date 0x0B (§2.13) | `Number` (milliseconds since the epoch; time zone dropped) |
//! | long string 0x0C (§2.14), XML document 0x0F (§2.17) | `Utf8String` |
//! | typed object 0x10 (§2.18) | `Object` (class name dropped) |
//! | reference 0x07 (§2.9), unsupported 0x0D (§2.15) | `Undefined` |
//! | movie clip 0x04, record set 0x0E, AVM+ 0x11 | error |
//!
//! Strings that are not UTF-8 are decoded lossily. The writer keeps property
//! order (`rml_amf0` objects are `HashMap`s), which matters for onMetaData.

use std::collections::HashMap;

use rml_amf0::Amf0Value;

/// Deepest nesting of objects and arrays accepted (the top-level value is at
/// depth 0).
pub const MAX_DEPTH: usize = 16;
/// Most values decoded by one [`Reader`] (bounds memory: an `Amf0Value` is
/// much larger than its 1-byte encoding).
pub const MAX_VALUES: usize = 65_536;

mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
}

/// Why an AMF0 payload cannot be decoded; offsets are within the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmfError {
    #[error("AMF0 data ends early (at byte {offset})")]
    Truncated { offset: usize },
    #[error("AMF0 values nested deeper than {max} levels (at byte {offset})")]
    TooDeep { max: usize, offset: usize },
    #[error("more than {max} AMF0 values")]
    TooManyValues { max: usize },
    #[error("unsupported AMF0 marker 0x{marker:02x} at byte {offset}")]
    UnsupportedMarker { marker: u8, offset: usize },
    #[error("AMF0 object-end marker where a value was expected (at byte {offset})")]
    UnexpectedObjectEnd { offset: usize },
}

/// Decodes every top-level value of `data` (up to a top-level object-end
/// marker, where `rml_amf0` stops too).
pub fn decode(data: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    let mut reader = Reader::new(data);
    let mut values = Vec::new();
    while let Some(v) = reader.read_value()? {
        values.push(v);
    }
    Ok(values)
}

/// A bounded AMF0 decoder over one message payload.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    budget: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            budget: MAX_VALUES,
        }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Next top-level value; `None` at the end of the data or at a top-level
    /// object-end marker (the rest is then ignored).
    pub fn read_value(&mut self) -> Result<Option<Amf0Value>, AmfError> {
        match self.peek() {
            None => Ok(None),
            Some(marker::OBJECT_END) => {
                self.pos = self.data.len();
                Ok(None)
            }
            Some(_) => self.value(0).map(Some),
        }
    }

    /// Next top-level value if it is an object, ECMA array or typed object:
    /// its properties in the order they were sent. A value of another kind is
    /// skipped and gives `None`, as does the end of the data.
    pub fn read_properties(&mut self) -> Result<Option<Vec<(String, Amf0Value)>>, AmfError> {
        match self.peek() {
            Some(marker::OBJECT) => {
                self.count()?;
                self.pos = self.pos.saturating_add(1);
                self.properties(1, false).map(Some)
            }
            Some(marker::ECMA_ARRAY) => {
                self.count()?;
                self.pos = self.pos.saturating_add(1);
                self.u32()?;
                self.properties(1, true).map(Some)
            }
            Some(marker::TYPED_OBJECT) => {
                self.count()?;
                self.pos = self.pos.saturating_add(1);
                let n = self.u16()?;
                self.take(usize::from(n))?;
                self.properties(1, false).map(Some)
            }
            _ => {
                self.read_value()?;
                Ok(None)
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn count(&mut self) -> Result<(), AmfError> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or(AmfError::TooManyValues { max: MAX_VALUES })?;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        let truncated = AmfError::Truncated {
            offset: self.data.len(),
        };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let bytes = self.data.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AmfError> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| AmfError::Truncated {
            offset: self.data.len(),
        })
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, AmfError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, AmfError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    fn string(&mut self, len: usize) -> Result<String, AmfError> {
        let bytes = self.take(len)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        self.count()?;
        let offset = self.pos;
        let m = self.u8()?;
        let nested = || -> Result<usize, AmfError> {
            let next = depth.saturating_add(1);
            if next > MAX_DEPTH {
                Err(AmfError::TooDeep {
                    max: MAX_DEPTH,
                    offset,
                })
            } else {
                Ok(next)
            }
        };
        Ok(match m {
            marker::NUMBER => Amf0Value::Number(self.f64()?),
            marker::BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            marker::STRING => {
                let n = self.u16()?;
                Amf0Value::Utf8String(self.string(usize::from(n))?)
            }
            marker::OBJECT => {
                let inner = nested()?;
                Amf0Value::Object(to_map(self.properties(inner, false)?))
            }
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED | marker::UNSUPPORTED => Amf0Value::Undefined,
            marker::REFERENCE => {
                self.u16()?;
                Amf0Value::Undefined
            }
            marker::ECMA_ARRAY => {
                let inner = nested()?;
                self.u32()?; // associative count: not reliable, read to the end marker
                Amf0Value::Object(to_map(self.properties(inner, true)?))
            }
            marker::STRICT_ARRAY => {
                let inner = nested()?;
                let n = self.u32()? as usize;
                // Every value takes at least one byte: never reserve more.
                let mut items = Vec::with_capacity(n.min(self.remaining()));
                for _ in 0..n {
                    items.push(self.value(inner)?);
                }
                Amf0Value::StrictArray(items)
            }
            marker::DATE => {
                let ms = self.f64()?;
                self.u16()?; // time zone, "reserved, not supported" (AMF0 §2.13)
                Amf0Value::Number(ms)
            }
            marker::LONG_STRING | marker::XML_DOCUMENT => {
                let n = self.u32()? as usize;
                Amf0Value::Utf8String(self.string(n)?)
            }
            marker::TYPED_OBJECT => {
                let inner = nested()?;
                let n = self.u16()?;
                self.take(usize::from(n))?;
                Amf0Value::Object(to_map(self.properties(inner, false)?))
            }
            marker::OBJECT_END => return Err(AmfError::UnexpectedObjectEnd { offset }),
            other => {
                return Err(AmfError::UnsupportedMarker {
                    marker: other,
                    offset,
                });
            }
        })
    }

    /// Object properties up to the empty-name + object-end terminator (AMF0
    /// §2.5). ECMA arrays may also end with the data (some encoders leave
    /// out the terminator).
    fn properties(
        &mut self,
        depth: usize,
        ecma: bool,
    ) -> Result<Vec<(String, Amf0Value)>, AmfError> {
        let mut props = Vec::new();
        loop {
            if ecma && self.remaining() == 0 {
                break;
            }
            let n = self.u16()?;
            if n == 0 {
                match self.peek() {
                    Some(marker::OBJECT_END) => {
                        self.pos = self.pos.saturating_add(1);
                        break;
                    }
                    None if ecma => break,
                    _ => {}
                }
            }
            let key = self.string(usize::from(n))?;
            let value = self.value(depth)?;
            props.push((key, value));
        }
        Ok(props)
    }
}

fn to_map(props: Vec<(String, Amf0Value)>) -> HashMap<String, Amf0Value> {
    props.into_iter().collect()
}

/// Number (AMF0 §2.2).
pub fn write_number(out: &mut Vec<u8>, value: f64) {
    out.push(marker::NUMBER);
    out.extend_from_slice(&value.to_be_bytes());
}

/// Boolean (AMF0 §2.3).
pub fn write_bool(out: &mut Vec<u8>, value: bool) {
    out.push(marker::BOOLEAN);
    out.push(u8::from(value));
}

/// String (AMF0 §2.4), or long string (§2.14) above 65535 bytes.
pub fn write_string(out: &mut Vec<u8>, value: &str) {
    match u16::try_from(value.len()) {
        Ok(n) => {
            out.push(marker::STRING);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Err(_) => {
            let n = u32::try_from(value.len()).unwrap_or(u32::MAX);
            out.push(marker::LONG_STRING);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(value.as_bytes());
}

/// Null (AMF0 §2.7).
pub fn write_null(out: &mut Vec<u8>) {
    out.push(marker::NULL);
}

/// Anonymous object (AMF0 §2.5) with properties in the given order.
pub fn write_object(out: &mut Vec<u8>, props: &[(&str, Amf0Value)]) {
    out.push(marker::OBJECT);
    write_props(out, props.iter().map(|(k, v)| (*k, v)), 0);
}

/// ECMA array (AMF0 §2.10) with properties in the given order: what
/// onMetaData carries.
pub fn write_ecma_array(out: &mut Vec<u8>, props: &[(&str, Amf0Value)]) {
    out.push(marker::ECMA_ARRAY);
    let n = u32::try_from(props.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    write_props(out, props.iter().map(|(k, v)| (*k, v)), 0);
}

/// Any value. Object keys are written sorted (a `HashMap` has no order);
/// values nested deeper than [`MAX_DEPTH`] are written as null.
pub fn write_value(out: &mut Vec<u8>, value: &Amf0Value) {
    write_value_at(out, value, 0);
}

fn write_value_at(out: &mut Vec<u8>, value: &Amf0Value, depth: usize) {
    match value {
        Amf0Value::Number(n) => write_number(out, *n),
        Amf0Value::Boolean(b) => write_bool(out, *b),
        Amf0Value::Utf8String(s) => write_string(out, s),
        Amf0Value::Null => write_null(out),
        Amf0Value::Undefined => out.push(marker::UNDEFINED),
        _ if depth >= MAX_DEPTH => write_null(out),
        Amf0Value::Object(map) => {
            let mut props: Vec<(&str, &Amf0Value)> =
                map.iter().map(|(k, v)| (k.as_str(), v)).collect();
            props.sort_by(|a, b| a.0.cmp(b.0));
            out.push(marker::OBJECT);
            write_props(out, props.into_iter(), depth.saturating_add(1));
        }
        Amf0Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_be_bytes());
            for item in items.iter().take(n as usize) {
                write_value_at(out, item, depth.saturating_add(1));
            }
        }
    }
}

fn write_props<'v>(
    out: &mut Vec<u8>,
    props: impl Iterator<Item = (&'v str, &'v Amf0Value)>,
    depth: usize,
) {
    for (key, value) in props {
        // Property names have a 16-bit length: cut longer ones at a char
        // boundary.
        let mut end = key.len().min(usize::from(u16::MAX));
        while !key.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        let key = key.get(..end).unwrap_or_default();
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        write_value_at(out, value, depth);
    }
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(pairs: &[(&str, Amf0Value)]) -> Amf0Value {
        Amf0Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn round_trip_with_rml_amf0() {
        let values = vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            obj(&[
                ("app", Amf0Value::Utf8String("live".into())),
                ("nested", obj(&[("x", Amf0Value::Boolean(true))])),
                (
                    "list",
                    Amf0Value::StrictArray(vec![Amf0Value::Null, Amf0Value::Undefined]),
                ),
            ]),
            Amf0Value::Null,
        ];
        let bytes = rml_amf0::serialize(&values).unwrap();
        assert_eq!(decode(&bytes).unwrap(), values);
        let mut ours = Vec::new();
        for v in &values {
            write_value(&mut ours, v);
        }
        assert_eq!(decode(&ours).unwrap(), values);
        assert_eq!(
            rml_amf0::deserialize(&mut std::io::Cursor::new(&ours)).unwrap(),
            values
        );
    }

    #[test]
    fn ecma_array_keeps_order() {
        let props = [
            ("width", Amf0Value::Number(1280.0)),
            ("height", Amf0Value::Number(720.0)),
            ("encoder", Amf0Value::Utf8String("obs".into())),
            ("a", Amf0Value::Boolean(false)),
        ];
        let mut out = Vec::new();
        write_string(&mut out, "onMetaData");
        write_ecma_array(&mut out, &props);
        let mut r = Reader::new(&out);
        assert_eq!(
            r.read_value().unwrap(),
            Some(Amf0Value::Utf8String("onMetaData".into()))
        );
        let got = r.read_properties().unwrap().unwrap();
        let expect: Vec<(String, Amf0Value)> = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(got, expect);
        assert_eq!(r.read_value().unwrap(), None);
    }

    #[test]
    fn date_long_string_typed_object_xml_reference() {
        let mut b = vec![marker::DATE];
        b.extend(1.5e12f64.to_be_bytes());
        b.extend([0, 0]);
        b.push(marker::LONG_STRING);
        b.extend(3u32.to_be_bytes());
        b.extend(b"abc");
        b.push(marker::TYPED_OBJECT);
        b.extend(2u16.to_be_bytes());
        b.extend(b"Cl");
        b.extend(1u16.to_be_bytes());
        b.extend(b"k");
        b.push(marker::NULL);
        b.extend([0, 0, 9]);
        b.push(marker::XML_DOCUMENT);
        b.extend(2u32.to_be_bytes());
        b.extend(b"<a");
        b.push(marker::REFERENCE);
        b.extend([0, 1]);
        b.push(marker::UNSUPPORTED);
        assert_eq!(
            decode(&b).unwrap(),
            vec![
                Amf0Value::Number(1.5e12),
                Amf0Value::Utf8String("abc".into()),
                obj(&[("k", Amf0Value::Null)]),
                Amf0Value::Utf8String("<a".into()),
                Amf0Value::Undefined,
                Amf0Value::Undefined,
            ]
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion_blowup() {
        // 100 000 nested objects: rml_amf0 would overflow the stack.
        let mut b = Vec::new();
        for _ in 0..100_000 {
            b.extend([marker::OBJECT, 0, 1, b'a']);
        }
        assert!(matches!(decode(&b), Err(AmfError::TooDeep { max: 16, .. })));
        let mut b = Vec::new();
        for _ in 0..100_000 {
            b.extend([marker::STRICT_ARRAY, 0, 0, 0, 1]);
        }
        assert!(matches!(decode(&b), Err(AmfError::TooDeep { .. })));
        // MAX_DEPTH levels of nesting are fine.
        let mut b = Vec::new();
        for _ in 0..MAX_DEPTH {
            b.extend([marker::OBJECT, 0, 1, b'a']);
        }
        b.push(marker::NULL);
        for _ in 0..MAX_DEPTH {
            b.extend([0, 0, 9]);
        }
        assert_eq!(decode(&b).unwrap().len(), 1);
        // The writer caps depth too.
        let mut v = Amf0Value::Null;
        for _ in 0..100 {
            v = Amf0Value::StrictArray(vec![v]);
        }
        let mut out = Vec::new();
        write_value(&mut out, &v);
        assert!(decode(&out).is_ok());
    }

    #[test]
    fn errors_not_panics() {
        assert!(matches!(
            decode(&[marker::NUMBER, 1, 2]),
            Err(AmfError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&[marker::STRING, 0xFF, 0xFF, b'a']),
            Err(AmfError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&[0x11]),
            Err(AmfError::UnsupportedMarker { marker: 0x11, .. })
        ));
        // A strict array claiming 4 billion items does not allocate them.
        assert!(matches!(
            decode(&[marker::STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF, marker::NULL]),
            Err(AmfError::Truncated { .. })
        ));
        // Too many values.
        let mut b = vec![marker::STRICT_ARRAY];
        b.extend(100_000u32.to_be_bytes());
        b.extend(std::iter::repeat_n(marker::NULL, 100_000));
        assert!(matches!(decode(&b), Err(AmfError::TooManyValues { .. })));
        // A top-level object end stops decoding, like rml_amf0.
        assert_eq!(
            decode(&[marker::NULL, marker::OBJECT_END, 0xEE]).unwrap(),
            vec![Amf0Value::Null]
        );
        // Invalid UTF-8 is decoded lossily.
        assert_eq!(
            decode(&[marker::STRING, 0, 1, 0xFF]).unwrap(),
            vec![Amf0Value::Utf8String("\u{FFFD}".into())]
        );
        // ECMA array without terminator at the end of the data.
        let mut b = vec![marker::ECMA_ARRAY, 0, 0, 0, 1, 0, 1, b'k', marker::NULL];
        assert_eq!(decode(&b).unwrap(), vec![obj(&[("k", Amf0Value::Null)])]);
        b.extend([0, 0]);
        assert_eq!(decode(&b).unwrap().len(), 1);
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..5000 {
            let n = rng.gen_range(0..64);
            let data: Vec<u8> = (0..n).map(|_| rng.gen_range(0..20)).collect();
            let _ = decode(&data);
            let mut r = Reader::new(&data);
            let _ = r.read_properties();
        }
    }

    #[test]
    fn long_strings_are_written_as_long_strings() {
        let s = "x".repeat(70_000);
        let mut out = Vec::new();
        write_string(&mut out, &s);
        assert_eq!(out[0], marker::LONG_STRING);
        assert_eq!(decode(&out).unwrap(), vec![Amf0Value::Utf8String(s)]);
    }
}
