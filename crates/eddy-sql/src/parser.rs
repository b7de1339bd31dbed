//! Parses ksqlDB's dialect: the tokens of a script are split into statements; ksqlDB-only statements and
//! clauses are parsed here, and the standard SQL inside them (queries, expressions) by sqlparser.

use sqlparser::ast::{BinaryOperator, Expr, Query};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use eddy_common::{Error, Position, Result, plan_err};

use crate::dialect::KsqlDialect;
use crate::limits;
use crate::normalize;
use crate::statement::*;
use crate::types::SqlType;
use crate::variables::Variables;

/// One statement of a script, with its own text (for `statementText` and the command log).
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    pub statement: Statement,
    /// The statement as the user wrote it, ending with `;`.
    pub text: String,
    /// Where the statement starts in the script.
    pub position: Position,
}

/// Parses a script of `;`-separated statements (its `DEFINE`s are substituted into the statements
/// after them).
pub fn parse(sql: &str) -> Result<Vec<ParsedStatement>> {
    parse_with(sql, &mut Variables::default(), &Types::new())
}

/// The types `CREATE TYPE` named, by upper-case name.
pub type Types = std::collections::BTreeMap<String, SqlType>;

/// Parses a script with session variables and named types: `${name}` in a statement is replaced
/// by the value the variable has there (from `variables`, or a `DEFINE` before it), and
/// `variables` ends as the script leaves them; a type name is one of `types` or of a `CREATE TYPE`
/// before it. A statement's text is the substituted one.
pub fn parse_with(
    sql: &str,
    variables: &mut Variables,
    types: &Types,
) -> Result<Vec<ParsedStatement>> {
    let mut types = std::borrow::Cow::Borrowed(types);
    let tokens = Tokenizer::new(&KsqlDialect, sql)
        .tokenize_with_location()
        .map_err(|e| syntax(e.message, Some(position(e.location))))?;
    let tokens: Vec<TokenWithSpan> = tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let index = LineIndex::new(sql);
    let mut out = Vec::new();
    for chunk in split_statements(tokens) {
        let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
            continue;
        };
        let start = index.offset(first.span.start);
        let end = index.offset(last.span.end);
        let mut text = sql[start..end.max(start)].trim_end().to_string();
        if !text.ends_with(';') {
            text.push(';');
        }
        let position = position(first.span.start);
        let chunk = if variables.applies_to(&text) {
            text = variables.substitute(&text)?;
            significant_tokens(&text)?
        } else {
            chunk
        };
        let body: Vec<TokenWithSpan> = chunk
            .into_iter()
            .filter(|t| t.token != Token::SemiColon)
            .collect();
        limits::check(&body)?;
        let statement =
            StatementParser::new(rewrite_complex_casts(rewrite_struct_stars(body), &types)?)
                .with_types(&types)
                .statement()?;
        match &statement {
            Statement::Define { name, value } => variables.define(name, value),
            Statement::Undefine { name } => {
                variables.undefine(name);
            }
            Statement::CreateType { name, sql_type, .. } => {
                types
                    .to_mut()
                    .entry(name.to_ascii_uppercase())
                    .or_insert_with(|| sql_type.clone());
            }
            _ => {}
        }
        out.push(ParsedStatement {
            statement,
            text,
            position,
        });
    }
    Ok(out)
}

/// `s->*` (every field of a struct, in a projection) as `s->"<STRUCT_STAR>"`, a field name no
/// struct has, which the planner expands into the struct's fields.
fn rewrite_struct_stars(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    for i in 1..tokens.len() {
        if tokens[i].token == Token::Mul && tokens[i - 1].token == Token::Arrow {
            tokens[i].token = Token::make_word(normalize::STRUCT_STAR, Some('"'));
        }
    }
    tokens
}

/// Whether a type is that of a `HEADERS` column: `ARRAY<STRUCT<KEY STRING, VALUE BYTES>>`.
fn is_headers_type(t: &SqlType) -> bool {
    let SqlType::Array(element) = t else {
        return false;
    };
    let SqlType::Struct(fields) = element.as_ref() else {
        return false;
    };
    matches!(fields.as_slice(),
        [(k, SqlType::String), (v, SqlType::Bytes)]
            if k.eq_ignore_ascii_case("KEY") && v.eq_ignore_ascii_case("VALUE"))
}

/// Splits tokens at `;` outside parentheses; each chunk keeps its terminating `;`.
fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut depth = 0i32;
    for t in tokens {
        match t.token {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => depth -= 1,
            Token::EOF => continue,
            _ => {}
        }
        let end = depth <= 0 && t.token == Token::SemiColon;
        current.push(t);
        if end {
            chunks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Maps sqlparser's (line, column) locations to byte offsets of the script.
struct LineIndex<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(sql: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { sql, line_starts }
    }

    fn offset(&self, loc: Location) -> usize {
        let Some(&line_start) = self.line_starts.get((loc.line as usize).saturating_sub(1)) else {
            return self.sql.len();
        };
        let line = &self.sql[line_start..];
        let col = (loc.column as usize).saturating_sub(1);
        line_start
            + line
                .char_indices()
                .nth(col)
                .map(|(i, _)| i)
                .unwrap_or(line.len())
    }
}

fn position(loc: Location) -> Position {
    Position {
        line: loc.line,
        column: loc.column,
    }
}

fn syntax(message: impl Into<String>, position: Option<Position>) -> Error {
    Error::Syntax {
        message: message.into(),
        position,
    }
}

/// Converts sqlparser's error (which ends in "at Line: l, Column: c") into ours.
fn from_parser_error(e: ParserError, fallback: Position) -> Error {
    let text = match e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
        ParserError::RecursionLimitExceeded => "the statement is nested too deeply".to_string(),
    };
    if let Some(idx) = text.rfind(" at Line: ") {
        let tail = &text[idx + " at Line: ".len()..];
        let mut parts = tail.split(", Column: ");
        let line = parts.next().and_then(|l| l.trim().parse().ok());
        let column = parts.next().and_then(|c| c.trim().parse().ok());
        if let (Some(line), Some(column)) = (line, column) {
            return syntax(text[..idx].to_string(), Some(Position { line, column }));
        }
    }
    syntax(text, Some(fallback))
}

/// A recursive-descent parser over one statement's tokens (whitespace removed).
struct StatementParser {
    tokens: Vec<TokenWithSpan>,
    pos: usize,
    /// How deep in type parameters the parser is.
    type_depth: usize,
    /// The types `CREATE TYPE` named, by upper-case name.
    types: Types,
}

impl StatementParser {
    fn new(tokens: Vec<TokenWithSpan>) -> Self {
        StatementParser {
            tokens,
            pos: 0,
            type_depth: 0,
            types: Types::new(),
        }
    }

    fn with_types(mut self, types: &Types) -> Self {
        self.types = types.clone();
        self
    }

    fn peek(&self) -> Option<&TokenWithSpan> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, n: usize) -> Option<&Token> {
        self.tokens.get(self.pos + n).map(|t| &t.token)
    }

    fn here(&self) -> Position {
        match self.peek().or(self.tokens.last()) {
            Some(t) if self.pos < self.tokens.len() => position(t.span.start),
            Some(t) => position(t.span.end),
            None => Position { line: 1, column: 1 },
        }
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T> {
        Err(syntax(message, Some(self.here())))
    }

    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    /// True when the next token is the unquoted word `kw` (case-insensitive).
    fn is_word(&self, kw: &str) -> bool {
        self.is_word_at(0, kw)
    }

    fn is_word_at(&self, n: usize, kw: &str) -> bool {
        matches!(self.peek_at(n), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
    }

    fn eat_word(&mut self, kw: &str) -> bool {
        if self.is_word(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_words(&mut self, kws: &[&str]) -> bool {
        if kws.iter().enumerate().all(|(i, k)| self.is_word_at(i, k)) {
            self.pos += kws.len();
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, kw: &str) -> Result<()> {
        if self.eat_word(kw) {
            Ok(())
        } else {
            self.error(format!("Expecting {kw}, found {}", self.describe_next()))
        }
    }

    fn eat(&mut self, t: &Token) -> bool {
        if self.peek_at(0) == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Token) -> Result<()> {
        if self.eat(t) {
            Ok(())
        } else {
            self.error(format!("Expecting '{t}', found {}", self.describe_next()))
        }
    }

    /// Expects `>`, splitting a `>>` that closes two nested type parameter lists.
    fn expect_gt(&mut self) -> Result<()> {
        if self.peek_at(0) == Some(&Token::ShiftRight) {
            self.tokens[self.pos].token = Token::Gt;
            return Ok(());
        }
        self.expect(&Token::Gt)
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            Some(t) => format!("'{}'", t.token),
            None => "the end of the statement".to_string(),
        }
    }

    fn expect_end(&self) -> Result<()> {
        if self.at_end() {
            Ok(())
        } else {
            self.error(format!(
                "Unexpected {} after the end of the statement",
                self.describe_next()
            ))
        }
    }

    /// An identifier: unquoted ones are upper-cased, quoted ones kept as written.
    fn identifier(&mut self) -> Result<String> {
        match self.peek_at(0) {
            Some(Token::Word(w)) => {
                let name = normalize::ident_name(&w.value, w.quote_style);
                self.pos += 1;
                Ok(name)
            }
            _ => self.error(format!(
                "Expecting an identifier, found {}",
                self.describe_next()
            )),
        }
    }

    fn string_literal(&mut self) -> Result<String> {
        match self.peek_at(0) {
            Some(Token::SingleQuotedString(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => self.error(format!(
                "Expecting a quoted string, found {}",
                self.describe_next()
            )),
        }
    }

    fn number(&mut self) -> Result<u64> {
        match self.peek_at(0) {
            Some(Token::Number(n, _)) => match n.parse() {
                Ok(v) => {
                    self.pos += 1;
                    Ok(v)
                }
                Err(_) => self.error(format!("Expecting a whole number, found '{n}'")),
            },
            _ => self.error(format!(
                "Expecting a number, found {}",
                self.describe_next()
            )),
        }
    }

    /// Runs sqlparser over the rest of the tokens and advances past what it consumed.
    fn with_sqlparser<T>(
        &mut self,
        f: impl FnOnce(&mut Parser) -> Result<T, ParserError>,
    ) -> Result<T> {
        let rest = self.tokens[self.pos..].to_vec();
        // sqlparser reports no location for errors at the end of input: point after the last token.
        let fallback = self
            .tokens
            .last()
            .map(|t| position(t.span.end))
            .unwrap_or(Position { line: 1, column: 1 });
        let mut parser = Parser::new(&KsqlDialect).with_tokens_with_locations(rest);
        let value = f(&mut parser).map_err(|e| from_parser_error(e, fallback))?;
        self.pos += parser.index();
        Ok(value)
    }

    fn statement(&mut self) -> Result<Statement> {
        let stmt = match self.peek_at(0) {
            Some(Token::Word(w)) if w.quote_style.is_none() => {
                match w.value.to_ascii_uppercase().as_str() {
                    "CREATE" => self.create()?,
                    "INSERT" => self.insert()?,
                    "SELECT" => Statement::Select(self.query_statement()?),
                    "SHOW" | "LIST" => self.show()?,
                    "DESCRIBE" => self.describe()?,
                    "DROP" => self.drop()?,
                    "ALTER" => self.alter()?,
                    "TERMINATE" => self.terminate()?,
                    "RELOAD" => {
                        self.pos += 1;
                        if !self.eat_word("FUNCTIONS") {
                            return self.error(format!(
                                "Expecting FUNCTIONS after RELOAD, found {}",
                                self.describe_next()
                            ));
                        }
                        Statement::ReloadFunctions
                    }
                    "SET" => self.set()?,
                    "UNSET" => {
                        self.pos += 1;
                        Statement::Unset {
                            name: self.string_literal()?,
                        }
                    }
                    "PRINT" => self.print()?,
                    "ASSERT" => self.assert()?,
                    "DEFINE" => {
                        self.pos += 1;
                        let name = self.variable_name()?;
                        self.expect(&Token::Eq)?;
                        Statement::Define {
                            name,
                            value: self.string_literal()?,
                        }
                    }
                    "UNDEFINE" => {
                        self.pos += 1;
                        Statement::Undefine {
                            name: self.variable_name()?,
                        }
                    }
                    "EXPLAIN" => {
                        self.pos += 1;
                        if self.is_word("SELECT")
                            || self.is_word("CREATE")
                            || self.is_word("INSERT")
                        {
                            let inner = self.statement()?;
                            let planned = match &inner {
                                Statement::Select(_) | Statement::InsertSelect { .. } => true,
                                Statement::CreateSource(c) => c.query.is_some(),
                                _ => false,
                            };
                            if !planned {
                                return self.error(format!(
                                    "EXPLAIN describes queries: a query id, SELECT, CREATE ... AS SELECT or INSERT INTO ... SELECT, not {}",
                                    inner.type_name()
                                ));
                            }
                            return Ok(Statement::Explain(ExplainTarget::Statement(Box::new(
                                inner,
                            ))));
                        }
                        Statement::Explain(ExplainTarget::Query(self.identifier_or_string()?))
                    }
                    other => return self.error(format!("Unknown statement '{other}'")),
                }
            }
            Some(t) => return self.error(format!("Unknown statement '{t}'")),
            None => return self.error("Empty statement"),
        };
        self.expect_end()?;
        Ok(stmt)
    }

    /// A variable's name as written: a letter or `_`, then letters, digits and `_`.
    fn variable_name(&mut self) -> Result<String> {
        match self.peek_at(0) {
            Some(Token::Word(w))
                if w.quote_style.is_none()
                    && w.value
                        .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && w.value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                let v = w.value.clone();
                self.pos += 1;
                Ok(v)
            }
            _ => self.error(format!(
                "Expecting a variable name (letters, digits and _), found {}",
                self.describe_next()
            )),
        }
    }

    fn identifier_or_string(&mut self) -> Result<String> {
        match self.peek_at(0) {
            Some(Token::SingleQuotedString(_)) => self.string_literal(),
            Some(Token::Word(w)) => {
                let v = w.value.clone();
                self.pos += 1;
                Ok(v)
            }
            _ => self.error(format!("Expecting a name, found {}", self.describe_next())),
        }
    }

    /// A model's name, as written (model names are not upper-cased: the catalog keys them in
    /// lower case).
    fn model_name(&mut self) -> Result<String> {
        self.identifier_or_string()
    }

    /// `VERSION n`, if next.
    fn model_version(&mut self) -> Result<Option<u32>> {
        if !self.is_word("VERSION") {
            return Ok(None);
        }
        self.version_number().map(Some)
    }

    /// A version number, optionally after `VERSION`.
    fn version_number(&mut self) -> Result<u32> {
        self.eat_word("VERSION");
        self.number_u32()
    }

    /// `2`, or `1 WEIGHT 90, 2 WEIGHT 10`, either optionally followed by `SHADOW 3`.
    fn alias_route(&mut self) -> Result<crate::alias_route::AliasRoute> {
        let first = self.version_number()?;
        let mut weights = Vec::new();
        if self.eat_word("WEIGHT") {
            weights.push((first, self.number_u32()?));
            while self.eat(&Token::Comma) {
                let v = self.version_number()?;
                self.expect_word("WEIGHT")?;
                weights.push((v, self.number_u32()?));
            }
        } else {
            weights.push((first, crate::alias_route::TOTAL_WEIGHT));
        }
        let shadow = if self.eat_word("SHADOW") {
            Some(self.version_number()?)
        } else {
            None
        };
        crate::alias_route::AliasRoute::new(weights, shadow).or_else(|e| self.error(e))
    }

    fn number_u32(&mut self) -> Result<u32> {
        let n = self.number()?;
        u32::try_from(n).or_else(|_| self.error(format!("{n} is too large")))
    }

    fn create(&mut self) -> Result<Statement> {
        self.expect_word("CREATE")?;
        if self.eat_word("MODEL") {
            let name = self.model_name()?;
            let version = self.model_version()?;
            self.expect_word("FROM")?;
            return Ok(Statement::CreateModel {
                name,
                version,
                folder: self.string_literal()?,
            });
        }
        if self.eat_word("TYPE") {
            let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
            let name = self.identifier()?;
            self.expect_word("AS")?;
            return Ok(Statement::CreateType {
                name,
                sql_type: self.sql_type()?,
                if_not_exists,
            });
        }
        if self.is_word("SOURCE") && self.is_word_at(1, "CONNECTOR") {
            self.pos += 2;
            let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
            let name = self.identifier()?;
            let properties = self.with_properties()?;
            return Ok(Statement::CreateConnector {
                name,
                if_not_exists,
                properties,
            });
        }
        if self.is_word("SINK") && self.is_word_at(1, "CONNECTOR") {
            return self.error(
                "Sink connectors are not supported: Eddy runs source connectors (MqttSource) itself",
            );
        }
        let or_replace = self.eat_words(&["OR", "REPLACE"]);
        let is_source = self.eat_word("SOURCE");
        let kind = self.source_kind()?;
        let if_not_exists = self.eat_words(&["IF", "NOT", "EXISTS"]);
        let name = self.identifier()?;
        let columns = if self.peek_at(0) == Some(&Token::LParen) {
            self.column_defs(kind)?
        } else {
            Vec::new()
        };
        let properties = self.with_properties()?;
        let query = if self.eat_word("AS") {
            Some(self.query_statement()?)
        } else {
            None
        };
        Ok(Statement::CreateSource(Box::new(CreateSource {
            kind,
            name,
            or_replace,
            if_not_exists,
            is_source,
            columns,
            properties,
            query,
        })))
    }

    fn column_defs(&mut self, kind: SourceKind) -> Result<Vec<ColumnDef>> {
        self.expect(&Token::LParen)?;
        let mut cols = Vec::new();
        loop {
            let name = self.identifier()?;
            let sql_type = self.sql_type()?;
            let mut header_key = None;
            let role = if self.eat_words(&["PRIMARY", "KEY"]) {
                if kind == SourceKind::Stream {
                    return self.error(format!(
                        "Column `{name}` is a 'PRIMARY KEY' column: please use 'KEY' for streams.\nTables have PRIMARY KEYs, which are unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints."
                    ));
                }
                ColumnRole::Key
            } else if self.eat_word("KEY") {
                if kind == SourceKind::Table {
                    return self.error(format!(
                        "Column `{name}` is a 'KEY' column: please use 'PRIMARY KEY' for tables.\nTables have PRIMARY KEYs, which are unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints."
                    ));
                }
                ColumnRole::Key
            } else if self.eat_word("HEADERS") {
                if !is_headers_type(&sql_type) {
                    return self.error(format!(
                        "Invalid type for HEADERS column `{name}`: expected ARRAY<STRUCT<`KEY` STRING, `VALUE` BYTES>>, got {sql_type}"
                    ));
                }
                ColumnRole::Headers
            } else if self.eat_word("HEADER") {
                self.expect(&Token::LParen)?;
                header_key = Some(self.string_literal()?);
                self.expect(&Token::RParen)?;
                if sql_type != SqlType::Bytes {
                    return self.error(format!(
                        "Invalid type for HEADER('{}') column `{name}`: expected BYTES, got {sql_type}",
                        header_key.as_deref().unwrap_or_default()
                    ));
                }
                ColumnRole::Header
            } else {
                ColumnRole::Value
            };
            cols.push(ColumnDef {
                name,
                sql_type,
                role,
                header_key,
            });
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        if self.peek_at(0) == Some(&Token::LParen) {
            return self.error("Expecting {',', ')'}");
        }
        self.expect(&Token::RParen)?;
        Ok(cols)
    }

    /// A ksqlDB type: `INT`, `DECIMAL(p, s)`, `ARRAY<T>`, `MAP<K, V>`, `STRUCT<f T, ...>`.
    fn sql_type(&mut self) -> Result<SqlType> {
        if self.type_depth >= limits::MAX_NESTING {
            return self.error(format!(
                "Types are nested more than {} levels deep",
                limits::MAX_NESTING
            ));
        }
        self.type_depth += 1;
        let t = self.nested_type();
        self.type_depth -= 1;
        t
    }

    fn nested_type(&mut self) -> Result<SqlType> {
        let name = match self.peek_at(0) {
            Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
            _ => return self.error(format!("Expecting a type, found {}", self.describe_next())),
        };
        self.pos += 1;
        Ok(match name.as_str() {
            "ARRAY" => {
                self.expect(&Token::Lt)?;
                let e = self.sql_type()?;
                self.expect_gt()?;
                SqlType::Array(Box::new(e))
            }
            "MAP" => {
                self.expect(&Token::Lt)?;
                let k = self.sql_type()?;
                self.expect(&Token::Comma)?;
                let v = self.sql_type()?;
                self.expect_gt()?;
                SqlType::Map(Box::new(k), Box::new(v))
            }
            // `STRUCT<>` (the tokenizer reads `<>` as one token).
            "STRUCT" if self.eat(&Token::Neq) => SqlType::Struct(Vec::new()),
            "STRUCT" => {
                self.expect(&Token::Lt)?;
                let mut fields = Vec::new();
                if !matches!(self.peek_at(0), Some(Token::Gt | Token::ShiftRight)) {
                    loop {
                        let f = self.identifier()?;
                        let t = self.sql_type()?;
                        fields.push((f, t));
                        if !self.eat(&Token::Comma) {
                            break;
                        }
                    }
                }
                self.expect_gt()?;
                SqlType::Struct(fields)
            }
            "DECIMAL" => {
                self.expect(&Token::LParen)?;
                let precision = self.number()?;
                self.expect(&Token::Comma)?;
                let scale = self.number()?;
                self.expect(&Token::RParen)?;
                if precision == 0 || precision > 38 || scale > precision {
                    return self.error(format!(
                        "DECIMAL({precision}, {scale}) is invalid: precision must be 1..38 and scale at most the precision"
                    ));
                }
                SqlType::Decimal {
                    precision: precision as u8,
                    scale: scale as i8,
                }
            }
            other => match SqlType::simple(other) {
                Some(t) => {
                    self.type_parameters()?;
                    t
                }
                None if self.types.contains_key(other) => self.types[other].clone(),
                None => {
                    self.pos -= 1;
                    return self.error(format!("Unknown type: {other}"));
                }
            },
        })
    }

    /// ksqlDB's grammar lets a simple type take parameters, `VARCHAR(STRING)` or `INT(10)`, which
    /// change nothing; anything else in the parentheses is a syntax error, as in ksqlDB.
    fn type_parameters(&mut self) -> Result<()> {
        if !self.eat(&Token::LParen) {
            return Ok(());
        }
        loop {
            match self.peek_at(0) {
                Some(Token::Number(..)) => {}
                Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("STRING") => {}
                _ => return self.error("Expecting {'STRING', INTEGER_VALUE}"),
            }
            self.pos += 1;
            if self.eat(&Token::RParen) {
                return Ok(());
            }
            if !self.eat(&Token::Comma) {
                return self.error("Expecting {',', ')'}");
            }
        }
    }

    fn with_properties(&mut self) -> Result<Properties> {
        let mut props = Properties::new();
        if !self.eat_word("WITH") {
            return Ok(props);
        }
        self.expect(&Token::LParen)?;
        loop {
            let key = match self.peek_at(0) {
                Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
                Some(Token::SingleQuotedString(s)) => s.to_ascii_uppercase(),
                _ => {
                    return self.error(format!(
                        "Expecting a property name, found {}",
                        self.describe_next()
                    ));
                }
            };
            self.pos += 1;
            self.expect(&Token::Eq)?;
            let value = match self.peek_at(0) {
                Some(Token::SingleQuotedString(s)) => PropertyValue::String(s.clone()),
                Some(Token::Number(n, _)) => PropertyValue::Number(n.clone()),
                Some(Token::Minus) => match self.peek_at(1) {
                    Some(Token::Number(n, _)) => {
                        let v = PropertyValue::Number(format!("-{n}"));
                        self.pos += 1;
                        v
                    }
                    _ => return self.error("Expecting a number after '-'"),
                },
                Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("true") => {
                    PropertyValue::Bool(true)
                }
                Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("false") => {
                    PropertyValue::Bool(false)
                }
                _ => {
                    return self.error(format!(
                        "Expecting a quoted string, number or boolean for property {key}, found {}",
                        self.describe_next()
                    ));
                }
            };
            self.pos += 1;
            props.insert(key, value);
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        self.expect(&Token::RParen)?;
        Ok(props)
    }

    fn insert(&mut self) -> Result<Statement> {
        self.expect_word("INSERT")?;
        self.expect_word("INTO")?;
        let target = self.identifier()?;
        let mut columns = Vec::new();
        if self.eat(&Token::LParen) {
            loop {
                columns.push(self.identifier()?);
                if !self.eat(&Token::Comma) {
                    break;
                }
            }
            self.expect(&Token::RParen)?;
        }
        if self.eat_word("VALUES") {
            self.expect(&Token::LParen)?;
            let mut values =
                self.with_sqlparser(|p| p.parse_comma_separated(Parser::parse_expr))?;
            self.expect(&Token::RParen)?;
            values.iter_mut().try_for_each(normalize::expr)?;
            return Ok(Statement::InsertValues {
                target,
                columns,
                values,
            });
        }
        if !columns.is_empty() {
            return self.error(format!("Expecting VALUES, found {}", self.describe_next()));
        }
        let properties = self.with_properties()?;
        let query = self.query_statement()?;
        Ok(Statement::InsertSelect {
            target,
            properties,
            query,
        })
    }

    /// A `SELECT` with ksqlDB's `WINDOW`, `PARTITION BY` and `EMIT` clauses, up to the end of the statement.
    fn query_statement(&mut self) -> Result<QueryStatement> {
        if !self.is_word("SELECT") {
            return self.error(format!("Expecting SELECT, found {}", self.describe_next()));
        }
        let mut window = None;
        let mut emit = None;
        let mut partition_by = None;
        let mut within = Vec::new();
        let mut joins = 0usize;
        let mut depth = 0i32;
        let mut i = self.pos;
        while i < self.tokens.len() {
            match &self.tokens[i].token {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket => depth -= 1,
                _ => {}
            }
            if depth != 0 {
                i += 1;
                continue;
            }
            let word = |j: usize| match self.tokens.get(j).map(|t| &t.token) {
                Some(Token::Word(w)) if w.quote_style.is_none() => {
                    Some(w.value.to_ascii_uppercase())
                }
                _ => None,
            };
            match word(i).as_deref() {
                Some("JOIN") => joins += 1,
                Some("WITHIN") if joins > 0 => {
                    let mut end = i + 1;
                    while end < self.tokens.len() && word(end).as_deref() != Some("ON") {
                        end += 1;
                    }
                    let sub: Vec<TokenWithSpan> = self.tokens.drain(i..end).collect();
                    within.push((joins - 1, StatementParser::new(sub).within()?));
                    continue;
                }
                Some("EMIT") => {
                    emit = Some(match word(i + 1).as_deref() {
                        Some("CHANGES") => Emit::Changes,
                        Some("FINAL") => Emit::Final,
                        _ => {
                            self.pos = i + 1;
                            return self.error(format!(
                                "Expecting CHANGES or FINAL, found {}",
                                self.describe_next()
                            ));
                        }
                    });
                    self.tokens.drain(i..i + 2);
                    continue;
                }
                Some("WINDOW")
                    if matches!(
                        word(i + 1).as_deref(),
                        Some("TUMBLING" | "HOPPING" | "SESSION")
                    ) =>
                {
                    let end = matching_paren(&self.tokens, i + 2).ok_or_else(|| {
                        syntax(
                            "Expecting '(' after the window type",
                            Some(position(self.tokens[i + 1].span.end)),
                        )
                    })?;
                    let sub: Vec<TokenWithSpan> = self.tokens.drain(i..=end).collect();
                    window = Some(StatementParser::new(sub).window()?);
                    continue;
                }
                Some("PARTITION") if word(i + 1).as_deref() == Some("BY") => {
                    let mut end = i + 2;
                    let mut d = 0;
                    while end < self.tokens.len() {
                        match &self.tokens[end].token {
                            Token::LParen => d += 1,
                            Token::RParen => d -= 1,
                            _ => {}
                        }
                        if d == 0 && matches!(word(end).as_deref(), Some("EMIT" | "LIMIT")) {
                            break;
                        }
                        end += 1;
                    }
                    let sub: Vec<TokenWithSpan> = self.tokens.drain(i..end).skip(2).collect();
                    let significant: Vec<&Token> = sub
                        .iter()
                        .map(|t| &t.token)
                        .filter(|t| !matches!(t, Token::Whitespace(_)))
                        .collect();
                    if matches!(significant.as_slice(), [Token::LParen, Token::RParen]) {
                        return Err(plan_err!("PARTITION BY requires at least one expression"));
                    }
                    let start = sub.first().map(|t| position(t.span.start));
                    let mut p = StatementParser::new(sub);
                    let mut exprs =
                        p.with_sqlparser(|p| p.parse_comma_separated(Parser::parse_expr))?;
                    p.expect_end()?;
                    // ksqlDB's grammar takes value expressions here, not boolean combinations.
                    if exprs.iter().any(|e| {
                        matches!(
                            e,
                            Expr::BinaryOp {
                                op: BinaryOperator::And | BinaryOperator::Or,
                                ..
                            }
                        )
                    }) {
                        return Err(syntax(
                            "PARTITION BY takes value expressions: put a condition in parentheses",
                            start,
                        ));
                    }
                    exprs.iter_mut().try_for_each(normalize::expr)?;
                    partition_by = Some(exprs);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        let mut query: Box<Query> = self.with_sqlparser(|p| p.parse_query())?;
        let written = query.clone();
        normalize::query(&mut query)?;
        Ok(QueryStatement {
            query,
            written,
            window,
            partition_by,
            emit,
            within,
        })
    }

    /// `WITHIN n unit | WITHIN (n unit, n unit)`, then optionally `GRACE PERIOD n unit`.
    fn within(&mut self) -> Result<JoinWithin> {
        self.expect_word("WITHIN")?;
        let (before_ms, after_ms) = if self.eat(&Token::LParen) {
            let before = self.duration()?;
            self.expect(&Token::Comma)?;
            let after = self.duration()?;
            self.expect(&Token::RParen)?;
            (before, after)
        } else {
            let both = self.duration()?;
            (both, both)
        };
        let grace_ms = if self.eat_words(&["GRACE", "PERIOD"]) {
            Some(self.duration()?)
        } else {
            None
        };
        self.expect_end()?;
        Ok(JoinWithin {
            before_ms,
            after_ms,
            grace_ms,
        })
    }

    /// `WINDOW TUMBLING|HOPPING|SESSION ( ... )`.
    fn window(&mut self) -> Result<WindowSpec> {
        self.expect_word("WINDOW")?;
        let kind_word = match self.peek_at(0) {
            Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
            _ => return self.error("Expecting TUMBLING, HOPPING or SESSION"),
        };
        self.pos += 1;
        self.expect(&Token::LParen)?;
        let kind = match kind_word.as_str() {
            "TUMBLING" => {
                self.expect_word("SIZE")?;
                WindowKind::Tumbling {
                    size_ms: self.duration()?,
                }
            }
            "HOPPING" => {
                self.expect_word("SIZE")?;
                let size_ms = self.duration()?;
                self.expect(&Token::Comma)?;
                self.expect_word("ADVANCE")?;
                self.expect_word("BY")?;
                WindowKind::Hopping {
                    size_ms,
                    advance_ms: self.duration()?,
                }
            }
            _ => WindowKind::Session {
                gap_ms: self.duration()?,
            },
        };
        let mut spec = WindowSpec {
            kind,
            grace_ms: None,
            retention_ms: None,
        };
        while self.eat(&Token::Comma) {
            if self.eat_word("RETENTION") {
                spec.retention_ms = Some(self.duration()?);
            } else if self.eat_words(&["GRACE", "PERIOD"]) {
                spec.grace_ms = Some(self.duration()?);
            } else {
                return self.error(format!(
                    "Expecting RETENTION or GRACE PERIOD, found {}",
                    self.describe_next()
                ));
            }
        }
        self.expect(&Token::RParen)?;
        self.expect_end()?;
        Ok(spec)
    }

    /// `n UNIT` as milliseconds.
    fn duration(&mut self) -> Result<i64> {
        let n = self.number()?;
        let Ok(n) = i64::try_from(n) else {
            return self.error(format!("The duration {n} is out of range"));
        };
        let unit = match self.peek_at(0) {
            Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
            _ => {
                return self.error(format!(
                    "Expecting a time unit, found {}",
                    self.describe_next()
                ));
            }
        };
        let Some(factor) = crate::window::unit_millis(&unit) else {
            return self.error(format!(
                "Unknown time unit '{unit}': use MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS"
            ));
        };
        self.pos += 1;
        match n.checked_mul(factor) {
            Some(millis) => Ok(millis),
            None => self.error(format!(
                "The duration {n} {unit} is out of range (at most {} {unit})",
                i64::MAX / factor
            )),
        }
    }

    fn show(&mut self) -> Result<Statement> {
        self.pos += 1;
        self.eat_word("ALL");
        let kind = match self.peek_at(0) {
            Some(Token::Word(w)) => match w.value.to_ascii_uppercase().as_str() {
                "STREAMS" => ShowKind::Streams,
                "TABLES" => ShowKind::Tables,
                "TOPICS" => ShowKind::Topics,
                "QUERIES" => ShowKind::Queries,
                "PROPERTIES" => ShowKind::Properties,
                "FUNCTIONS" => ShowKind::Functions,
                "VARIABLES" => ShowKind::Variables,
                "TYPES" => ShowKind::Types,
                "MODELS" => ShowKind::Models,
                "CONNECTORS" => ShowKind::Connectors,
                other => return self.error(format!("Cannot show '{other}': expecting STREAMS, TABLES, TOPICS, QUERIES, PROPERTIES, FUNCTIONS, VARIABLES, TYPES, MODELS or CONNECTORS")),
            },
            _ => return self.error(format!("Expecting what to show, found {}", self.describe_next())),
        };
        self.pos += 1;
        let extended = self.eat_word("EXTENDED");
        Ok(Statement::Show { kind, extended })
    }

    fn describe(&mut self) -> Result<Statement> {
        self.pos += 1;
        let mut extended = self.eat_word("EXTENDED");
        if self.eat_word("FUNCTION") {
            return Ok(Statement::DescribeFunction {
                name: self.identifier_or_string()?.to_ascii_uppercase(),
            });
        }
        // `DESCRIBE MODEL name` (a source named MODEL is `DESCRIBE MODEL;`).
        if self.is_word("MODEL") && matches!(self.peek_at(1), Some(Token::Word(_))) {
            self.pos += 1;
            return Ok(Statement::DescribeModel {
                name: self.model_name()?,
            });
        }
        if self.is_word("CONNECTOR") && matches!(self.peek_at(1), Some(Token::Word(_))) {
            self.pos += 1;
            return Ok(Statement::DescribeConnector {
                name: self.identifier()?,
            });
        }
        for (word, kind) in [
            ("STREAMS", SourceKind::Stream),
            ("TABLES", SourceKind::Table),
        ] {
            if self.is_word(word)
                && self.peek_at(1).is_none_or(
                    |t| matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case("EXTENDED")),
                )
            {
                self.pos += 1;
                extended |= self.eat_word("EXTENDED");
                return Ok(Statement::DescribeAll { kind, extended });
            }
        }
        let name = self.identifier()?;
        extended |= self.eat_word("EXTENDED");
        Ok(Statement::Describe { name, extended })
    }

    fn drop(&mut self) -> Result<Statement> {
        self.pos += 1;
        if self.eat_word("CONNECTOR") {
            let if_exists = self.eat_words(&["IF", "EXISTS"]);
            return Ok(Statement::DropConnector {
                if_exists,
                name: self.identifier()?,
            });
        }
        if self.eat_word("MODEL") {
            let if_exists = self.eat_words(&["IF", "EXISTS"]);
            return Ok(Statement::DropModel {
                name: self.model_name()?,
                version: self.model_version()?,
                if_exists,
            });
        }
        if self.eat_word("TYPE") {
            let if_exists = self.eat_words(&["IF", "EXISTS"]);
            return Ok(Statement::DropType {
                if_exists,
                name: self.identifier()?,
            });
        }
        let kind = self.source_kind()?;
        let if_exists = self.eat_words(&["IF", "EXISTS"]);
        let name = self.identifier()?;
        let delete_topic = self.eat_words(&["DELETE", "TOPIC"]);
        Ok(Statement::Drop {
            kind,
            name,
            if_exists,
            delete_topic,
        })
    }

    /// `ASSERT [NOT EXISTS] TOPIC ...` or `ASSERT [NOT EXISTS] SCHEMA ...`.
    fn assert(&mut self) -> Result<Statement> {
        self.pos += 1;
        let exists = !self.eat_words(&["NOT", "EXISTS"]);
        if self.eat_word("TOPIC") {
            let name = self.identifier_or_string()?;
            let properties = self.with_properties()?;
            let timeout_ms = self.timeout()?;
            return Ok(Statement::AssertTopic {
                name,
                exists,
                properties,
                timeout_ms,
            });
        }
        if !self.eat_word("SCHEMA") {
            return self.error(format!(
                "Expecting TOPIC or SCHEMA after ASSERT, found {}",
                self.describe_next()
            ));
        }
        let subject = if self.eat_word("SUBJECT") {
            Some(self.identifier_or_string()?)
        } else {
            None
        };
        let id = if self.eat_word("ID") {
            Some(self.number()?)
        } else {
            None
        };
        if subject.is_none() && id.is_none() {
            return self.error("ASSERT SCHEMA needs a SUBJECT, an ID or both");
        }
        Ok(Statement::AssertSchema {
            subject,
            id,
            exists,
            timeout_ms: self.timeout()?,
        })
    }

    /// `TIMEOUT n unit`, if there.
    fn timeout(&mut self) -> Result<Option<i64>> {
        if self.eat_word("TIMEOUT") {
            Ok(Some(self.duration()?))
        } else {
            Ok(None)
        }
    }

    /// `STREAM` or `TABLE`.
    fn source_kind(&mut self) -> Result<SourceKind> {
        if self.eat_word("STREAM") {
            Ok(SourceKind::Stream)
        } else if self.eat_word("TABLE") {
            Ok(SourceKind::Table)
        } else {
            self.error(format!(
                "Expecting STREAM or TABLE, found {}",
                self.describe_next()
            ))
        }
    }

    fn alter(&mut self) -> Result<Statement> {
        self.pos += 1;
        if self.eat_word("MODEL") {
            let name = self.model_name()?;
            let set = if self.eat_word("SET") {
                true
            } else if self.eat_word("DROP") {
                false
            } else {
                return self.error(format!(
                    "Expecting SET ALIAS or DROP ALIAS, found {}",
                    self.describe_next()
                ));
            };
            self.expect_word("ALIAS")?;
            let alias = self.identifier_or_string()?;
            let route = if set {
                self.expect(&Token::Eq)?;
                Some(self.alias_route()?)
            } else {
                None
            };
            return Ok(Statement::AlterModel { name, alias, route });
        }
        let kind = self.source_kind()?;
        let name = self.identifier()?;
        let mut columns = Vec::new();
        loop {
            if !self.eat_word("ADD") {
                return self.error(format!("Expecting ADD, found {}", self.describe_next()));
            }
            self.eat_word("COLUMN");
            let name = self.identifier()?;
            let sql_type = self.sql_type()?;
            columns.push(ColumnDef {
                name,
                sql_type,
                role: ColumnRole::Value,
                header_key: None,
            });
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        Ok(Statement::Alter {
            kind,
            name,
            columns,
        })
    }

    fn terminate(&mut self) -> Result<Statement> {
        self.pos += 1;
        if self.eat_word("ALL") {
            return Ok(Statement::Terminate { query_id: None });
        }
        Ok(Statement::Terminate {
            query_id: Some(self.identifier_or_string()?),
        })
    }

    fn set(&mut self) -> Result<Statement> {
        self.pos += 1;
        let name = self.string_literal()?;
        self.expect(&Token::Eq)?;
        let value = self.string_literal()?;
        Ok(Statement::Set { name, value })
    }

    fn print(&mut self) -> Result<Statement> {
        self.pos += 1;
        let topic = self.identifier_or_string()?;
        let from_beginning = self.eat_words(&["FROM", "BEGINNING"]);
        let mut interval = None;
        let mut limit = None;
        loop {
            if self.eat_word("INTERVAL") || self.eat_word("SAMPLE") {
                interval = Some(self.number()?);
            } else if self.eat_word("LIMIT") {
                limit = Some(self.number()?);
            } else {
                break;
            }
        }
        Ok(Statement::Print {
            topic,
            from_beginning,
            interval,
            limit,
        })
    }
}

/// Index of the `)` matching the `(` at `open`.
fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    if tokens.get(open)?.token != Token::LParen {
        return None;
    }
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Name of the function that casts to and from ARRAY, MAP and STRUCT (see `functions::cast`).
pub const COMPLEX_CAST: &str = "ksql_cast";

/// sqlparser cannot read ksqlDB's `MAP<K, V>` and `STRUCT<f T>` types inside `CAST`, so
/// `CAST(e AS <ARRAY|MAP|STRUCT type>)` becomes `ksql_cast(e, '<type>')` before it gets there.
fn rewrite_complex_casts(
    mut tokens: Vec<TokenWithSpan>,
    types: &Types,
) -> Result<Vec<TokenWithSpan>> {
    let mut i = 0;
    while i + 1 < tokens.len() {
        let is_cast = matches!(&tokens[i].token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("CAST"));
        let Some(end) = is_cast.then(|| matching_paren(&tokens, i + 1)).flatten() else {
            i += 1;
            continue;
        };
        let mut depth = 0;
        let mut as_at = None;
        for (j, t) in tokens.iter().enumerate().take(end).skip(i + 2) {
            match &t.token {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket => depth -= 1,
                Token::Word(w)
                    if depth == 0
                        && w.quote_style.is_none()
                        && w.value.eq_ignore_ascii_case("AS") =>
                {
                    as_at = Some(j)
                }
                _ => {}
            }
        }
        if let Some(a) = as_at
            && let Some(t) = tokens.get(a + 1)
            && matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("NULL"))
        {
            let at = position(t.span.start);
            return Err(syntax(
                format!(
                    "Syntax error at or near 'NULL' at {at} (NULL is not a type: cast to the type \
                     the value should have, e.g. CAST(NULL AS STRING))"
                ),
                None,
            ));
        }
        let complex = as_at.and_then(|a| match &tokens.get(a + 1)?.token {
            Token::Word(w) => Some(
                ["ARRAY", "MAP", "STRUCT"]
                    .iter()
                    .any(|k| w.value.eq_ignore_ascii_case(k))
                    || types.contains_key(&w.value.to_ascii_uppercase()),
            ),
            _ => None,
        });
        let (Some(as_at), Some(true)) = (as_at, complex) else {
            i += 1;
            continue;
        };
        let mut p = StatementParser::new(tokens[as_at + 1..end].to_vec()).with_types(types);
        let sql_type = p.sql_type()?;
        p.expect_end()?;
        let span = |k: usize| tokens[k].span;
        let with = |token: Token, k: usize| TokenWithSpan::new(token, span(k));
        let replacement = [
            with(Token::make_word(COMPLEX_CAST, None), i),
            with(Token::Comma, as_at),
            with(Token::SingleQuotedString(sql_type.to_string()), as_at + 1),
        ];
        // `CAST ( e AS type )` → `ksql_cast ( e , 'type' )`
        tokens.splice(as_at..end, replacement[1..].iter().cloned());
        tokens[i] = replacement[0].clone();
        i += 1;
    }
    Ok(tokens)
}

/// The tokens of a text, without whitespace and the end marker.
fn significant_tokens(text: &str) -> Result<Vec<TokenWithSpan>> {
    let tokens = Tokenizer::new(&KsqlDialect, text)
        .tokenize_with_location()
        .map_err(|e| syntax(e.message, Some(position(e.location))))?;
    Ok(tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .collect())
}

/// Parses a ksqlDB type such as `MAP<STRING, ARRAY<INT>>`.
pub fn parse_type(text: &str) -> Result<SqlType> {
    let tokens = significant_tokens(text)?;
    let mut p = StatementParser::new(tokens);
    let t = p.sql_type()?;
    p.expect_end()?;
    Ok(t)
}

/// Parses one expression (used by `INSERT VALUES` callers and tests).
pub fn parse_expr(sql: &str) -> Result<Expr> {
    let tokens = significant_tokens(sql)?;
    limits::check(&tokens)?;
    let mut p = StatementParser::new(rewrite_complex_casts(tokens, &Types::new())?);
    let mut e = p.with_sqlparser(|p| p.parse_expr())?;
    p.expect_end()?;
    normalize::expr(&mut e)?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> ParsedStatement {
        let mut v = parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(v.len(), 1, "{sql}");
        v.remove(0)
    }

    #[test]
    fn create_stream_with_key_and_properties() {
        let p = one(
            "create stream readings (id STRING KEY, `temp` DOUBLE, tags ARRAY<MAP<STRING, STRUCT<a INT, b DECIMAL(4,2)>>>)\n  WITH (kafka_topic='r', value_format='JSON', partitions=4);",
        );
        let Statement::CreateSource(c) = p.statement else {
            panic!()
        };
        assert_eq!(c.name, "READINGS");
        assert_eq!(c.kind, SourceKind::Stream);
        assert_eq!(c.columns[0].name, "ID");
        assert_eq!(c.columns[0].role, ColumnRole::Key);
        assert_eq!(c.columns[1].name, "temp");
        assert_eq!(
            c.columns[2].sql_type.to_string(),
            "ARRAY<MAP<STRING, STRUCT<`A` INTEGER, `B` DECIMAL(4, 2)>>>"
        );
        assert_eq!(
            c.properties["KAFKA_TOPIC"],
            PropertyValue::String("r".into())
        );
        assert_eq!(
            c.properties["PARTITIONS"],
            PropertyValue::Number("4".into())
        );
        assert!(p.text.starts_with("create stream readings") && p.text.ends_with("partitions=4);"));
    }

    #[test]
    fn csas_lifts_emit_window_and_partition_by() {
        let p = one(
            "CREATE TABLE t AS SELECT id, COUNT(*) FROM s WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 1 MINUTE) GROUP BY id EMIT CHANGES;",
        );
        let Statement::CreateSource(c) = p.statement else {
            panic!()
        };
        let q = c.query.unwrap();
        assert_eq!(q.emit, Some(Emit::Changes));
        assert_eq!(
            q.window,
            Some(WindowSpec {
                kind: WindowKind::Tumbling { size_ms: 10_000 },
                grace_ms: Some(60_000),
                retention_ms: None
            })
        );
        assert_eq!(
            q.query.to_string(),
            r#"SELECT "ID", COUNT((CAST(1 AS INT))) FROM "S" GROUP BY "ID""#
        );

        let p = one("SELECT * FROM s PARTITION BY a->b EMIT CHANGES LIMIT 10;");
        let Statement::Select(q) = p.statement else {
            panic!()
        };
        assert_eq!(q.limit(), Some(10));
        assert_eq!(
            q.partition_by.unwrap()[0].to_string(),
            r#"get_field("A", 'B')"#
        );
    }

    #[test]
    fn simple_types_take_parameters_that_change_nothing() {
        let p = one("CREATE STREAM s (k VARCHAR(STRING) KEY, v INT(10)) WITH (kafka_topic='t');");
        let Statement::CreateSource(c) = &p.statement else {
            panic!("a CREATE")
        };
        assert_eq!(c.columns[0].sql_type, SqlType::String);
        assert_eq!(c.columns[1].sql_type, SqlType::Int);
        let err = |sql: &str| parse(sql).unwrap_err().to_string();
        assert_eq!(
            err("CREATE STREAM s (k INT (KEY)) WITH (kafka_topic='t');"),
            "line 1:25: Syntax Error\nExpecting {'STRING', INTEGER_VALUE}"
        );
        assert_eq!(
            err("CREATE STREAM s (k VARCHAR(STRING) (KEY)) WITH (kafka_topic='t');"),
            "line 1:36: Syntax Error\nExpecting {',', ')'}"
        );
    }

    #[test]
    fn scripts_split_on_semicolons_outside_strings() {
        let v = parse("SET 'auto.offset.reset' = 'earliest';\n-- a comment; still a comment\nSHOW STREAMS; insert into s (a) values ('x;y');").unwrap();
        assert_eq!(v.len(), 3);
        assert!(matches!(
            v[1].statement,
            Statement::Show {
                kind: ShowKind::Streams,
                extended: false
            }
        ));
        assert_eq!(v[2].text, "insert into s (a) values ('x;y');");
        assert_eq!(
            v[2].position,
            Position {
                line: 3,
                column: 15
            }
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("SELECT * FROM s WHERE;").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("line 1:22: Syntax Error"), "{text}");
        let e = parse("RUN SCRIPT 'x';").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1:1: Syntax Error\nUnknown statement 'RUN'"
        );
        let e = parse("CREATE STREAM s (a FLOATY) WITH (kafka_topic='t');").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1:20: Syntax Error\nUnknown type: FLOATY"
        );
        let e = parse("CREATE STREAM s (a INT PRIMARY KEY) WITH (kafka_topic='t');").unwrap_err();
        assert!(
            e.to_string().contains("please use 'KEY' for streams"),
            "{e}"
        );
    }

    /// A statement and a check of what it parses to.
    type Case = (&'static str, fn(&Statement) -> bool);

    #[test]
    fn other_statements() {
        let cases: Vec<Case> = vec![
            ("DROP STREAM IF EXISTS x DELETE TOPIC", |s| {
                matches!(
                    s,
                    Statement::Drop {
                        if_exists: true,
                        delete_topic: true,
                        ..
                    }
                )
            }),
            ("TERMINATE ALL", |s| {
                matches!(s, Statement::Terminate { query_id: None })
            }),
            (
                "terminate CSAS_X_1",
                |s| matches!(s, Statement::Terminate { query_id: Some(q) } if q == "CSAS_X_1"),
            ),
            (
                "DESCRIBE EXTENDED foo",
                |s| matches!(s, Statement::Describe { name, extended: true } if name == "FOO"),
            ),
            ("DESCRIBE foo EXTENDED", |s| {
                matches!(s, Statement::Describe { extended: true, .. })
            }),
            (
                "CREATE MODEL car_ae VERSION 2 FROM '/m/car_ae/2'",
                |s| matches!(s, Statement::CreateModel { name, version: Some(2), folder } if name == "car_ae" && folder == "/m/car_ae/2"),
            ),
            (
                "ALTER MODEL car_ae SET ALIAS production = 2",
                |s| matches!(s, Statement::AlterModel { name, alias, route: Some(r) } if name == "car_ae" && alias == "production" && r.to_string() == "2"),
            ),
            (
                "ALTER MODEL car_ae SET ALIAS production = 1 WEIGHT 90, VERSION 2 WEIGHT 10 SHADOW 3",
                |s| matches!(s, Statement::AlterModel { route: Some(r), .. } if r.to_string() == "1 WEIGHT 90, 2 WEIGHT 10 SHADOW 3"),
            ),
            ("ALTER MODEL car_ae DROP ALIAS candidate", |s| {
                matches!(s, Statement::AlterModel { route: None, .. })
            }),
            (
                "DROP MODEL IF EXISTS car_ae VERSION 1",
                |s| matches!(s, Statement::DropModel { name, version: Some(1), if_exists: true } if name == "car_ae"),
            ),
            (
                "DESCRIBE MODEL car_ae",
                |s| matches!(s, Statement::DescribeModel { name } if name == "car_ae"),
            ),
            (
                "DESCRIBE model",
                |s| matches!(s, Statement::Describe { name, .. } if name == "MODEL"),
            ),
            (
                "CREATE SOURCE CONNECTOR IF NOT EXISTS cars WITH (\"connector.class\" = 'MqttSource', \"mqtt.topics\" = 'cars/+/telemetry')",
                |s| matches!(s, Statement::CreateConnector { name, if_not_exists: true, properties } if name == "CARS" && properties.get("MQTT.TOPICS").map(|v| v.text()).as_deref() == Some("cars/+/telemetry")),
            ),
            (
                "DROP CONNECTOR IF EXISTS cars",
                |s| matches!(s, Statement::DropConnector { name, if_exists: true } if name == "CARS"),
            ),
            (
                "DESCRIBE CONNECTOR cars",
                |s| matches!(s, Statement::DescribeConnector { name } if name == "CARS"),
            ),
            ("SHOW MODELS", |s| {
                matches!(
                    s,
                    Statement::Show {
                        kind: ShowKind::Models,
                        ..
                    }
                )
            }),
            (
                "DESCRIBE FUNCTION ucase",
                |s| matches!(s, Statement::DescribeFunction { name } if name == "UCASE"),
            ),
            ("RELOAD FUNCTIONS", |s| {
                matches!(s, Statement::ReloadFunctions)
            }),
            ("LIST QUERIES EXTENDED", |s| {
                matches!(
                    s,
                    Statement::Show {
                        kind: ShowKind::Queries,
                        extended: true
                    }
                )
            }),
            ("PRINT 'my-topic' FROM BEGINNING LIMIT 3", |s| {
                matches!(
                    s,
                    Statement::Print {
                        from_beginning: true,
                        limit: Some(3),
                        ..
                    }
                )
            }),
            ("UNSET 'auto.offset.reset'", |s| {
                matches!(s, Statement::Unset { .. })
            }),
            ("INSERT INTO s SELECT * FROM t", |s| {
                matches!(s, Statement::InsertSelect { .. })
            }),
            (
                "INSERT INTO s (ROWTIME, a) VALUES (1, 'x')",
                |s| matches!(s, Statement::InsertValues { columns, values, .. } if columns.len() == 2 && values.len() == 2),
            ),
        ];
        for (sql, check) in cases {
            let p = one(sql);
            assert!(check(&p.statement), "{sql}: {:?}", p.statement);
        }
    }
}
