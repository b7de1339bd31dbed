//! The files that list who may use the REST API, in the format of Jetty's property files that
//! ksqlDB's `PropertyFileLoginModule` reads: one `name: hash[, role ...]` per line, `#` comments.
//! Only hashes are kept in them, never passwords or tokens.

use std::path::Path;

use crate::access_error::AccessError;

/// Largest file read (a file of a few thousand users).
const MAX_FILE_BYTES: u64 = 4 << 20;

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub hash: String,
    pub roles: Vec<String>,
}

/// Reads the file named by the setting `key`.
pub fn read(key: &'static str, path: &Path) -> Result<Vec<Entry>, AccessError> {
    let read_error = |source| AccessError::Read {
        key,
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_FILE_BYTES {
        return Err(AccessError::Setting {
            key,
            reason: format!(
                "{} is {size} bytes, more than {MAX_FILE_BYTES}",
                path.display()
            ),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse(&text).map_err(|(line, reason)| AccessError::Line {
        path: path.to_path_buf(),
        line,
        reason,
    })
}

/// The entries of a file's text, or the first bad line's number and what is wrong with it.
pub fn parse(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let bad = |reason: &str| (i + 1, reason.to_string());
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| bad("expected `name: hash[, role ...]`"))?;
        let name = name.trim();
        let mut fields = rest.split(',').peekable();
        // A PHC hash's parameters are separated by commas too (`$argon2id$v=19$m=19456,t=2,p=1$...`):
        // a field that starts `name=` continues the hash; roles have no `=`.
        let mut hash = fields.next().unwrap_or_default().trim().to_string();
        while let Some(next) = fields.next_if(|f| is_parameter(f)) {
            hash.push(',');
            hash.push_str(next.trim_end());
        }
        let fields = fields.map(str::trim);
        if name.is_empty() || hash.is_empty() {
            return Err(bad("expected `name: hash[, role ...]`"));
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(bad(&format!("'{name}' is listed twice")));
        }
        entries.push(Entry {
            name: name.to_string(),
            hash,
            roles: fields
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    Ok(entries)
}

/// Whether a comma-separated field is a hash parameter (`t=2`) rather than a role.
fn is_parameter(field: &str) -> bool {
    field.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_names_hashes_and_roles() {
        let entries =
            parse("# users\nfred: $argon2id$x, admin, user\n\n! old\nbarney:$argon2id$y\n")
                .unwrap();
        assert_eq!(entries[0].name, "fred");
        assert_eq!(entries[0].hash, "$argon2id$x");
        assert_eq!(entries[0].roles, ["admin", "user"]);
        assert_eq!(entries[1].name, "barney");
        assert!(entries[1].roles.is_empty());
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        let entries = parse(&format!("wilma: {phc}, admin, user\n")).unwrap();
        assert_eq!(entries[0].hash, phc);
        assert_eq!(entries[0].roles, ["admin", "user"]);
    }

    #[test]
    fn a_bad_line_is_named() {
        assert_eq!(parse("a: h\nno colon here\n").unwrap_err().0, 2);
        assert_eq!(parse("a: h\na: g\n").unwrap_err().0, 2);
        assert_eq!(parse(": h\n").unwrap_err().0, 1);
    }
}
