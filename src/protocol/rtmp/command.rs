//! Command messages (RTMP 1.0 §7.1.1, §7.2): an AMF0 command name, a
//! transaction id, a command object and optional arguments.

use rml_amf0::Amf0Value;

use super::amf::{self, AmfError, Reader};

/// A received command (RTMP 1.0 §7.1.1).
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub name: String,
    /// 0 when absent or not a number.
    pub transaction_id: f64,
    /// The command object; `Null` when absent.
    pub object: Amf0Value,
    /// Further arguments (for `publish`: stream name and type, RTMP 1.0
    /// §7.2.2.6; for `play`: stream name, start, duration, reset, §7.2.2.1).
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// Decodes a command payload (AMF0). `Ok(None)` when it does not start
    /// with a name string; it is then ignored, never a panic (rml_rtmp
    /// panicked on commands with fewer than 3 values).
    pub fn parse(payload: &[u8]) -> Result<Option<Command>, AmfError> {
        let mut reader = Reader::new(payload);
        let Some(Amf0Value::Utf8String(name)) = reader.read_value()? else {
            return Ok(None);
        };
        let transaction_id = match reader.read_value()? {
            Some(Amf0Value::Number(n)) => n,
            _ => 0.0,
        };
        let object = reader.read_value()?.unwrap_or(Amf0Value::Null);
        let mut args = Vec::new();
        while let Some(v) = reader.read_value()? {
            args.push(v);
        }
        Ok(Some(Command {
            name,
            transaction_id,
            object,
            args,
        }))
    }

    /// Argument `i` (after the command object) if it is a string.
    pub fn arg_str(&self, i: usize) -> Option<&str> {
        match self.args.get(i) {
            Some(Amf0Value::Utf8String(s)) => Some(s),
            _ => None,
        }
    }

    /// Argument `i` (after the command object) if it is a number.
    pub fn arg_number(&self, i: usize) -> Option<f64> {
        match self.args.get(i) {
            Some(Amf0Value::Number(n)) => Some(*n),
            _ => None,
        }
    }

    /// Property `key` of the command object if it is a string.
    pub fn object_str(&self, key: &str) -> Option<&str> {
        property_str(&self.object, key)
    }
}

/// Property `key` of an object value if it is a string.
pub fn property_str<'a>(object: &'a Amf0Value, key: &str) -> Option<&'a str> {
    match object {
        Amf0Value::Object(map) => match map.get(key) {
            Some(Amf0Value::Utf8String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Builds a command or data message payload value by value.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts a command: name and transaction id.
    pub fn command(name: &str, transaction_id: f64) -> Self {
        Writer::default().string(name).number(transaction_id)
    }

    pub fn string(mut self, s: &str) -> Self {
        amf::write_string(&mut self.buf, s);
        self
    }

    pub fn number(mut self, n: f64) -> Self {
        amf::write_number(&mut self.buf, n);
        self
    }

    pub fn boolean(mut self, b: bool) -> Self {
        amf::write_bool(&mut self.buf, b);
        self
    }

    pub fn null(mut self) -> Self {
        amf::write_null(&mut self.buf);
        self
    }

    pub fn object(mut self, props: &[(&str, Amf0Value)]) -> Self {
        amf::write_object(&mut self.buf, props);
        self
    }

    pub fn ecma_array(mut self, props: &[(&str, Amf0Value)]) -> Self {
        amf::write_ecma_array(&mut self.buf, props);
        self
    }

    pub fn value(mut self, v: &Amf0Value) -> Self {
        amf::write_value(&mut self.buf, v);
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// `onStatus(0, null, {level, code, description})` (RTMP 1.0 §7.2.2).
pub fn on_status(level: &str, code: &str, description: &str) -> Vec<u8> {
    Writer::command("onStatus", 0.0)
        .null()
        .object(&[
            ("level", Amf0Value::Utf8String(level.to_owned())),
            ("code", Amf0Value::Utf8String(code.to_owned())),
            ("description", Amf0Value::Utf8String(description.to_owned())),
        ])
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_short_commands() {
        assert_eq!(Command::parse(&[]).unwrap(), None);
        let only_name = Writer::default().string("FCUnpublish").finish();
        let c = Command::parse(&only_name).unwrap().unwrap();
        assert_eq!(
            (c.name.as_str(), c.transaction_id, &c.object, c.args.len()),
            ("FCUnpublish", 0.0, &Amf0Value::Null, 0)
        );
        let not_a_name = Writer::default().number(1.0).finish();
        assert_eq!(Command::parse(&not_a_name).unwrap(), None);
    }

    #[test]
    fn parse_publish() {
        let p = Writer::command("publish", 5.0)
            .null()
            .string("cam1?token=x")
            .string("live")
            .finish();
        let c = Command::parse(&p).unwrap().unwrap();
        assert_eq!(c.name, "publish");
        assert_eq!(c.transaction_id, 5.0);
        assert_eq!(c.arg_str(0), Some("cam1?token=x"));
        assert_eq!(c.arg_str(1), Some("live"));
        assert_eq!(c.arg_str(2), None);
        assert_eq!(c.arg_number(0), None);
    }
}
