//! Protocol Buffers schemas: parsed from `.proto` (proto3 and proto2) text, derived from columns the
//! way ksqlDB derives them, and turned into SQL types for inferred columns. Well-known types ksqlDB
//! uses (google.protobuf.Timestamp, google.type.Date, google.type.TimeOfDay, confluent.type.Decimal)
//! and the wrapper types are understood as the scalars they stand for.

use std::fmt::Write;

use eddy_sql::SqlType;

use crate::format::limits::{MAX_DEPTH, too_deep};

/// The scalar types of protobuf fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
}

impl Scalar {
    fn parse(name: &str) -> Option<Scalar> {
        Some(match name {
            "double" => Scalar::Double,
            "float" => Scalar::Float,
            "int32" => Scalar::Int32,
            "int64" => Scalar::Int64,
            "uint32" => Scalar::Uint32,
            "uint64" => Scalar::Uint64,
            "sint32" => Scalar::Sint32,
            "sint64" => Scalar::Sint64,
            "fixed32" => Scalar::Fixed32,
            "fixed64" => Scalar::Fixed64,
            "sfixed32" => Scalar::Sfixed32,
            "sfixed64" => Scalar::Sfixed64,
            "bool" => Scalar::Bool,
            "string" => Scalar::String,
            "bytes" => Scalar::Bytes,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Scalar::Double => "double",
            Scalar::Float => "float",
            Scalar::Int32 => "int32",
            Scalar::Int64 => "int64",
            Scalar::Uint32 => "uint32",
            Scalar::Uint64 => "uint64",
            Scalar::Sint32 => "sint32",
            Scalar::Sint64 => "sint64",
            Scalar::Fixed32 => "fixed32",
            Scalar::Fixed64 => "fixed64",
            Scalar::Sfixed32 => "sfixed32",
            Scalar::Sfixed64 => "sfixed64",
            Scalar::Bool => "bool",
            Scalar::String => "string",
            Scalar::Bytes => "bytes",
        }
    }
}

/// The type of a field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    Scalar(Scalar),
    /// A message, by index into [`ProtoSchema::messages`].
    Message(usize),
    /// An enum, by index into [`ProtoSchema::enums`].
    Enum(usize),
    /// `map<K, V>`: on the wire, repeated entries with the key as field 1 and the value as field 2.
    Map(Box<FieldType>, Box<FieldType>),
    /// google.protobuf.Timestamp (seconds, nanos).
    Timestamp,
    /// google.type.Date (year, month, day).
    Date,
    /// google.type.TimeOfDay (hours, minutes, seconds, nanos).
    Time,
    /// confluent.type.Decimal (value: big-endian unscaled bytes, precision, scale).
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// A google.protobuf wrapper (Int32Value, StringValue, ...): a message with the scalar as field 1.
    Wrapper(Scalar),
}

/// A field of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoField {
    pub name: String,
    pub number: u32,
    pub ty: FieldType,
    pub repeated: bool,
}

/// A message with its fully qualified name.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub name: String,
    pub fields: Vec<ProtoField>,
    /// Indexes (into the schema's messages) of the messages declared inside this one, in order.
    pub nested: Vec<usize>,
}

/// An enum with its values.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoEnum {
    pub name: String,
    pub values: Vec<(String, i32)>,
}

/// A parsed `.proto` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProtoSchema {
    pub messages: Vec<Message>,
    pub enums: Vec<ProtoEnum>,
    /// Indexes of the top-level messages, in order.
    pub top: Vec<usize>,
}

/// The root message ksqlDB writes values with.
const ROOT: &str = "ConnectDefault1";

impl ProtoSchema {
    /// The message a path of Confluent message indexes names (`[0]` is the first top-level one).
    pub fn message_at(&self, path: &[usize]) -> Option<usize> {
        let (first, rest) = path.split_first()?;
        let mut current = *self.top.get(*first)?;
        for i in rest {
            current = *self.messages[current].nested.get(*i)?;
        }
        Some(current)
    }

    /// The message indexes of a message (its path from the top level).
    pub fn path_of(&self, message: usize) -> Vec<usize> {
        if let Some(i) = self.top.iter().position(|m| *m == message) {
            return vec![i];
        }
        for (parent, m) in self.messages.iter().enumerate() {
            if let Some(i) = m.nested.iter().position(|n| *n == message) {
                let mut path = self.path_of(parent);
                path.push(i);
                return path;
            }
        }
        vec![0]
    }

    /// The message named `name` (fully qualified, or its last part), if any.
    pub fn message_named(&self, name: &str) -> Option<usize> {
        self.messages
            .iter()
            .position(|m| m.name == name)
            .or_else(|| {
                self.messages
                    .iter()
                    .position(|m| m.name.rsplit('.').next() == Some(name))
            })
    }

    /// The schema ksqlDB derives for columns: one message with a field per column, numbered in order;
    /// structs become nested messages.
    pub fn for_columns(columns: &[(String, SqlType)]) -> ProtoSchema {
        let mut schema = ProtoSchema::default();
        let root = schema.add_message(ROOT, columns, &mut 1);
        schema.top.push(root);
        schema
    }

    fn add_message(
        &mut self,
        name: &str,
        columns: &[(String, SqlType)],
        counter: &mut usize,
    ) -> usize {
        let index = self.messages.len();
        self.messages.push(Message {
            name: name.to_string(),
            fields: Vec::new(),
            nested: Vec::new(),
        });
        let mut fields = Vec::new();
        for (i, (n, t)) in columns.iter().enumerate() {
            let (ty, repeated) = match t {
                SqlType::Array(e) => (self.field_type(name, e, counter, index), true),
                other => (self.field_type(name, other, counter, index), false),
            };
            fields.push(ProtoField {
                name: n.clone(),
                number: i as u32 + 1,
                ty,
                repeated,
            });
        }
        self.messages[index].fields = fields;
        index
    }

    fn field_type(
        &mut self,
        parent: &str,
        t: &SqlType,
        counter: &mut usize,
        parent_index: usize,
    ) -> FieldType {
        match t {
            SqlType::Boolean => FieldType::Scalar(Scalar::Bool),
            SqlType::Int => FieldType::Scalar(Scalar::Int32),
            SqlType::Bigint => FieldType::Scalar(Scalar::Int64),
            SqlType::Double => FieldType::Scalar(Scalar::Double),
            SqlType::String => FieldType::Scalar(Scalar::String),
            SqlType::Bytes => FieldType::Scalar(Scalar::Bytes),
            SqlType::Decimal { precision, scale } => FieldType::Decimal {
                precision: *precision,
                scale: *scale,
            },
            SqlType::Timestamp => FieldType::Timestamp,
            SqlType::Date => FieldType::Date,
            SqlType::Time => FieldType::Time,
            // Arrays of arrays have no protobuf form; the inner array is written as its elements' type.
            SqlType::Array(e) => self.field_type(parent, e, counter, parent_index),
            SqlType::Map(_, v) => FieldType::Map(
                Box::new(FieldType::Scalar(Scalar::String)),
                Box::new(self.field_type(parent, v, counter, parent_index)),
            ),
            SqlType::Struct(fields) => {
                *counter += 1;
                let name = format!("{parent}.ConnectDefault{counter}");
                let m = self.add_message(&name, fields, counter);
                self.messages[parent_index].nested.push(m);
                FieldType::Message(m)
            }
        }
    }

    /// The `.proto` text of the schema.
    pub fn to_text(&self) -> String {
        let mut out = String::from("syntax = \"proto3\";\n\n");
        let uses = |ty: &dyn Fn(&FieldType) -> bool| {
            self.messages
                .iter()
                .flat_map(|m| &m.fields)
                .any(|f| ty(&f.ty) || matches!(&f.ty, FieldType::Map(_, v) if ty(v)))
        };
        for (pred, import) in [
            (
                &(|t: &FieldType| *t == FieldType::Timestamp) as &dyn Fn(&FieldType) -> bool,
                "google/protobuf/timestamp.proto",
            ),
            (
                &|t: &FieldType| *t == FieldType::Date,
                "google/type/date.proto",
            ),
            (
                &|t: &FieldType| *t == FieldType::Time,
                "google/type/timeofday.proto",
            ),
            (
                &|t: &FieldType| matches!(t, FieldType::Decimal { .. }),
                "confluent/type/decimal.proto",
            ),
        ] {
            if uses(pred) {
                let _ = writeln!(out, "import \"{import}\";");
            }
        }
        for m in &self.top {
            self.write_message(*m, 0, &mut out);
        }
        out
    }

    fn write_message(&self, index: usize, depth: usize, out: &mut String) {
        let m = &self.messages[index];
        let pad = "  ".repeat(depth);
        let short = m.name.rsplit('.').next().unwrap_or(&m.name);
        let _ = writeln!(out, "\n{pad}message {short} {{");
        for f in &m.fields {
            let label = if f.repeated { "repeated " } else { "" };
            let options = match f.ty {
                FieldType::Decimal { precision, scale } => format!(
                    " [(confluent.field_meta) = {{ params: [{{ key: \"precision\", value: \"{precision}\" }}, {{ key: \"scale\", value: \"{scale}\" }}] }}]"
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{pad}  {label}{} {} = {}{options};",
                self.type_text(&f.ty),
                f.name,
                f.number
            );
        }
        for n in &m.nested {
            self.write_message(*n, depth + 1, out);
        }
        let _ = writeln!(out, "{pad}}}");
    }

    fn type_text(&self, t: &FieldType) -> String {
        match t {
            FieldType::Scalar(s) => s.name().to_string(),
            FieldType::Message(m) => self.messages[*m]
                .name
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_string(),
            FieldType::Enum(e) => self.enums[*e].name.clone(),
            FieldType::Map(k, v) => format!("map<{}, {}>", self.type_text(k), self.type_text(v)),
            FieldType::Timestamp => "google.protobuf.Timestamp".to_string(),
            FieldType::Date => "google.type.Date".to_string(),
            FieldType::Time => "google.type.TimeOfDay".to_string(),
            FieldType::Decimal { .. } => "confluent.type.Decimal".to_string(),
            FieldType::Wrapper(s) => format!("google.protobuf.{}Value", wrapper_name(*s)),
        }
    }

    /// The SQL columns of a message's fields. A message that contains itself has no SQL type: it
    /// is refused once nesting passes the decoders' depth limit.
    pub fn columns_of(&self, message: usize) -> Result<Vec<(String, SqlType)>, String> {
        self.columns_at(message, 0)
    }

    fn columns_at(&self, message: usize, depth: usize) -> Result<Vec<(String, SqlType)>, String> {
        if depth >= MAX_DEPTH {
            return Err(format!(
                "Protobuf message {} nests more than {MAX_DEPTH} levels deep (does it contain itself?)",
                self.messages[message].name
            ));
        }
        self.messages[message]
            .fields
            .iter()
            .map(|f| {
                let t = self.sql_type(&f.ty, depth)?;
                Ok((
                    f.name.clone(),
                    if f.repeated {
                        SqlType::Array(Box::new(t))
                    } else {
                        t
                    },
                ))
            })
            .collect()
    }

    fn sql_type(&self, t: &FieldType, depth: usize) -> Result<SqlType, String> {
        Ok(match t {
            FieldType::Scalar(s) | FieldType::Wrapper(s) => match s {
                Scalar::Double | Scalar::Float => SqlType::Double,
                Scalar::Int32 | Scalar::Sint32 | Scalar::Sfixed32 => SqlType::Int,
                Scalar::Uint32 | Scalar::Fixed32 => SqlType::Bigint,
                Scalar::Int64
                | Scalar::Uint64
                | Scalar::Sint64
                | Scalar::Fixed64
                | Scalar::Sfixed64 => SqlType::Bigint,
                Scalar::Bool => SqlType::Boolean,
                Scalar::String => SqlType::String,
                Scalar::Bytes => SqlType::Bytes,
            },
            FieldType::Enum(_) => SqlType::String,
            FieldType::Message(m) => SqlType::Struct(self.columns_at(*m, depth + 1)?),
            FieldType::Map(k, v) => SqlType::Map(
                Box::new(self.sql_type(k, depth + 1)?),
                Box::new(self.sql_type(v, depth + 1)?),
            ),
            FieldType::Timestamp => SqlType::Timestamp,
            FieldType::Date => SqlType::Date,
            FieldType::Time => SqlType::Time,
            FieldType::Decimal { precision, scale } => SqlType::Decimal {
                precision: *precision,
                scale: *scale,
            },
        })
    }

    /// Parses `.proto` text.
    pub fn parse(text: &str) -> Result<ProtoSchema, String> {
        let tokens = tokenize(text)?;
        let mut p = ProtoParser {
            tokens: &tokens,
            pos: 0,
            schema: ProtoSchema::default(),
            pending: Vec::new(),
            package: String::new(),
            depth: 0,
        };
        p.file()?;
        p.resolve()?;
        Ok(p.schema)
    }
}

fn wrapper_name(s: Scalar) -> &'static str {
    match s {
        Scalar::Double => "Double",
        Scalar::Float => "Float",
        Scalar::Int64 => "Int64",
        Scalar::Uint64 => "UInt64",
        Scalar::Int32 => "Int32",
        Scalar::Uint32 => "UInt32",
        Scalar::Bool => "Bool",
        Scalar::String => "String",
        _ => "Bytes",
    }
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '/' {
            chars.next();
            match chars.next() {
                Some('/') => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('*') => {
                    let mut last = ' ';
                    for c in chars.by_ref() {
                        if last == '*' && c == '/' {
                            break;
                        }
                        last = c;
                    }
                }
                _ => return Err("Unexpected '/' in the protobuf schema".to_string()),
            }
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut s = String::from('"');
            for d in chars.by_ref() {
                if d == c {
                    break;
                }
                s.push(d);
            }
            tokens.push(s);
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            let mut s = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_alphanumeric() || d == '_' || d == '.' || d == '-' {
                    s.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(s);
        } else {
            tokens.push(c.to_string());
            chars.next();
        }
    }
    Ok(tokens)
}

/// A field whose type name is resolved once every message and enum is known.
struct Pending {
    message: usize,
    field: usize,
    /// The type as written, and for a map the value type as written.
    type_name: String,
    map_value: Option<String>,
    scope: String,
    /// Precision and scale from Confluent's field metadata, for decimals.
    decimal: Option<(u8, i8)>,
}

/// The `precision` and `scale` parameters of a field's `confluent.field_meta` option (tokens of the
/// option, strings with their leading quote).
fn decimal_params(options: &[String]) -> Option<(u8, i8)> {
    let param = |key: &str| {
        let at = options.iter().position(|t| t == &format!("\"{key}"))?;
        options[at + 1..]
            .iter()
            .find_map(|t| t.strip_prefix('"').and_then(|v| v.parse::<i64>().ok()))
    };
    Some((param("precision")? as u8, param("scale").unwrap_or(0) as i8))
}

struct ProtoParser<'t> {
    tokens: &'t [String],
    pos: usize,
    schema: ProtoSchema,
    pending: Vec<Pending>,
    package: String,
    /// Messages declared inside each other around the current position.
    depth: usize,
}

impl ProtoParser<'_> {
    fn next(&mut self) -> Result<&str, String> {
        let t = self
            .tokens
            .get(self.pos)
            .ok_or("The protobuf schema ends too early")?;
        self.pos += 1;
        Ok(t)
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn expect(&mut self, want: &str) -> Result<(), String> {
        let got = self.next()?;
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "Expected '{want}' in the protobuf schema but found '{got}'"
            ))
        }
    }

    /// Skips to the end of the current statement (`;`) or over a `{ ... }` block.
    fn skip_statement(&mut self) -> Result<(), String> {
        let mut depth = 0;
        loop {
            match self.next()? {
                ";" if depth == 0 => return Ok(()),
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    }

    fn file(&mut self) -> Result<(), String> {
        while let Some(t) = self.peek() {
            match t {
                "package" => {
                    self.next()?;
                    self.package = self.next()?.to_string();
                    self.expect(";")?;
                }
                "message" => {
                    let scope = self.package.clone();
                    let m = self.message(&scope)?;
                    self.schema.top.push(m);
                }
                "enum" => {
                    let scope = self.package.clone();
                    self.enumeration(&scope)?;
                }
                _ => self.skip_statement()?,
            }
        }
        Ok(())
    }

    fn qualified(scope: &str, name: &str) -> String {
        if scope.is_empty() {
            name.to_string()
        } else {
            format!("{scope}.{name}")
        }
    }

    fn enumeration(&mut self, scope: &str) -> Result<(), String> {
        self.expect("enum")?;
        let name = Self::qualified(scope, self.next()?);
        self.expect("{")?;
        let mut values = Vec::new();
        loop {
            match self.next()?.to_string().as_str() {
                "}" => break,
                "option" | "reserved" => {
                    self.skip_statement()?;
                }
                value => {
                    self.expect("=")?;
                    let n: i32 = self
                        .next()?
                        .parse()
                        .map_err(|_| format!("Bad number for enum value {value}"))?;
                    if self.peek() == Some("[") {
                        while self.next()? != "]" {}
                    }
                    self.expect(";")?;
                    values.push((value.to_string(), n));
                }
            }
        }
        self.schema.enums.push(ProtoEnum { name, values });
        Ok(())
    }

    fn message(&mut self, scope: &str) -> Result<usize, String> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep("The protobuf schema"));
        }
        self.depth += 1;
        let index = self.message_body(scope);
        self.depth -= 1;
        index
    }

    fn message_body(&mut self, scope: &str) -> Result<usize, String> {
        self.expect("message")?;
        let name = Self::qualified(scope, self.next()?);
        self.expect("{")?;
        let index = self.schema.messages.len();
        self.schema.messages.push(Message {
            name: name.clone(),
            fields: Vec::new(),
            nested: Vec::new(),
        });
        self.body(index, &name)?;
        Ok(index)
    }

    /// The fields and nested declarations of a message, up to its closing brace.
    fn body(&mut self, index: usize, name: &str) -> Result<(), String> {
        loop {
            let t = self
                .peek()
                .ok_or("The protobuf schema ends inside a message")?
                .to_string();
            match t.as_str() {
                "}" => {
                    self.next()?;
                    return Ok(());
                }
                "message" => {
                    let m = self.message(name)?;
                    self.schema.messages[index].nested.push(m);
                }
                "enum" => self.enumeration(name)?,
                "oneof" => {
                    self.next()?;
                    self.next()?;
                    self.expect("{")?;
                    self.body(index, name)?;
                }
                "option" | "reserved" | "extensions" | "extend" => self.skip_statement()?,
                ";" => {
                    self.next()?;
                }
                _ => self.field(index, name)?,
            }
        }
    }

    fn field(&mut self, index: usize, scope: &str) -> Result<(), String> {
        let mut repeated = false;
        let mut type_name = self.next()?.to_string();
        if matches!(type_name.as_str(), "repeated" | "optional" | "required") {
            repeated = type_name == "repeated";
            type_name = self.next()?.to_string();
        }
        let mut map_value = None;
        if type_name == "map" {
            self.expect("<")?;
            type_name = self.next()?.to_string();
            self.expect(",")?;
            map_value = Some(self.next()?.to_string());
            self.expect(">")?;
        }
        let name = self.next()?.to_string();
        self.expect("=")?;
        let number: u32 = self
            .next()?
            .parse()
            .map_err(|_| format!("Bad field number for {name}"))?;
        let mut options = Vec::new();
        if self.peek() == Some("[") {
            let mut depth = 0;
            loop {
                let t = self.next()?.to_string();
                match t.as_str() {
                    "[" => depth += 1,
                    "]" if depth == 1 => break,
                    "]" => depth -= 1,
                    _ => {}
                }
                options.push(t);
            }
        }
        self.expect(";")?;
        let decimal = decimal_params(&options);
        let fields = &mut self.schema.messages[index].fields;
        fields.push(ProtoField {
            name,
            number,
            ty: FieldType::Scalar(Scalar::Bytes),
            repeated,
        });
        self.pending.push(Pending {
            message: index,
            field: fields.len() - 1,
            type_name,
            map_value,
            scope: scope.to_string(),
            decimal,
        });
        Ok(())
    }

    fn resolve(&mut self) -> Result<(), String> {
        for p in std::mem::take(&mut self.pending) {
            let key = self.resolve_name(&p.type_name, &p.scope)?;
            let ty = match (&p.map_value, key, p.decimal) {
                (Some(v), key, _) => {
                    FieldType::Map(Box::new(key), Box::new(self.resolve_name(v, &p.scope)?))
                }
                (None, FieldType::Decimal { .. }, Some((precision, scale))) => {
                    FieldType::Decimal { precision, scale }
                }
                (None, key, _) => key,
            };
            self.schema.messages[p.message].fields[p.field].ty = ty;
        }
        Ok(())
    }

    fn resolve_name(&self, name: &str, scope: &str) -> Result<FieldType, String> {
        if let Some(s) = Scalar::parse(name) {
            return Ok(FieldType::Scalar(s));
        }
        let bare = name.trim_start_matches('.');
        let well_known = match bare {
            "google.protobuf.Timestamp" => Some(FieldType::Timestamp),
            "google.type.Date" => Some(FieldType::Date),
            "google.type.TimeOfDay" => Some(FieldType::Time),
            // The value carries its own scale; the precision is at most Eddy's.
            "confluent.type.Decimal" => Some(FieldType::Decimal {
                precision: 38,
                scale: 0,
            }),
            _ => bare
                .strip_prefix("google.protobuf.")
                .and_then(|w| w.strip_suffix("Value"))
                .and_then(|w| Scalar::parse(&w.to_ascii_lowercase()))
                .map(FieldType::Wrapper),
        };
        if let Some(t) = well_known {
            return Ok(t);
        }
        // Look the name up from the innermost scope outwards, as protoc does.
        let mut scope = if name.starts_with('.') { "" } else { scope };
        loop {
            let full = Self::qualified(scope, bare);
            if let Some(m) = self.schema.messages.iter().position(|m| m.name == full) {
                return Ok(FieldType::Message(m));
            }
            if let Some(e) = self.schema.enums.iter().position(|e| e.name == full) {
                return Ok(FieldType::Enum(e));
            }
            if scope.is_empty() {
                return Err(format!("Unknown protobuf type '{name}'"));
            }
            scope = scope.rsplit_once('.').map_or("", |(outer, _)| outer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_text_parses_with_nesting_maps_enums_and_well_known_types() {
        let s = ProtoSchema::parse(
            r#"syntax = "proto3"; package p;
            import "google/protobuf/timestamp.proto";
            message Key1 { uint32 k1 = 1; }
            message Value {
              // a comment
              string NAME = 1;
              repeated int64 NUMS = 2 [packed = true];
              map<string, Inner> BY_NAME = 3;
              google.protobuf.Timestamp AT = 4;
              Colour C = 5;
              message Inner { double X = 1; }
              enum Colour { RED = 0; GREEN = 1; }
            }"#,
        )
        .unwrap();
        assert_eq!(s.top.len(), 2);
        let v = s.message_at(&[1]).unwrap();
        assert_eq!(s.messages[v].name, "p.Value");
        let inner = s.message_at(&[1, 0]).unwrap();
        assert_eq!(s.messages[inner].name, "p.Value.Inner");
        assert_eq!(s.path_of(inner), vec![1, 0]);
        let cols = s.columns_of(v).unwrap();
        assert_eq!(cols[1].1, SqlType::Array(Box::new(SqlType::Bigint)));
        assert_eq!(
            cols[2].1,
            SqlType::Map(
                Box::new(SqlType::String),
                Box::new(SqlType::Struct(vec![("X".into(), SqlType::Double)]))
            )
        );
        assert_eq!(cols[3].1, SqlType::Timestamp);
        assert_eq!(cols[4].1, SqlType::String);
    }

    #[test]
    fn derived_schema_round_trips_through_its_text() {
        let cols = vec![
            ("ID".to_string(), SqlType::Bigint),
            (
                "TAGS".to_string(),
                SqlType::Array(Box::new(SqlType::String)),
            ),
            (
                "S".to_string(),
                SqlType::Struct(vec![("A".into(), SqlType::Int)]),
            ),
            ("AT".to_string(), SqlType::Timestamp),
            (
                "AMOUNT".to_string(),
                SqlType::Decimal {
                    precision: 6,
                    scale: 2,
                },
            ),
        ];
        let s = ProtoSchema::for_columns(&cols);
        let text = s.to_text();
        assert!(text.contains("repeated string TAGS = 2;"), "{text}");
        let back = ProtoSchema::parse(&text).unwrap();
        assert_eq!(back.columns_of(back.top[0]).unwrap(), cols);
    }

    #[test]
    fn self_containing_and_deeply_nested_schemas_are_errors_not_overflows() {
        let node =
            ProtoSchema::parse("syntax = \"proto3\"; message Node { Node next = 1; int32 v = 2; }")
                .unwrap();
        let e = node.columns_of(0).unwrap_err();
        assert!(e.contains("contain itself"), "{e}");
        // Data nested as deep as the bytes allow is refused at the depth limit.
        let mut data = vec![0x10, 0x01];
        for _ in 0..10_000 {
            let mut outer = vec![0x0a];
            crate::format::protobuf::wire::write_varint(data.len() as u64, &mut outer);
            outer.extend_from_slice(&data);
            data = outer;
        }
        let e = crate::format::protobuf::wire::read_message_json(&node, 0, &data).unwrap_err();
        assert!(e.contains("levels deep"), "{e}");
        let deep = format!(
            "syntax = \"proto3\"; {} {}",
            "message M { ".repeat(100_000),
            "}".repeat(100_000)
        );
        assert!(
            ProtoSchema::parse(&deep)
                .unwrap_err()
                .contains("levels deep")
        );
    }
}
