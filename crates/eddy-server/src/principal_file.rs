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
            reason: format!("{} is {size} bytes, more than {MAX_FILE_BYTES}", path.display()),
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
        let mut fields = rest.split(',').map(str::trim);
        let hash = fields.next().unwrap_or_default();
        if name.is_empty() || hash.is_empty() {
            return Err(bad("expected `name: hash[, role ...]`"));
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(bad(&format!("'{name}' is listed twice")));
        }
        entries.push(Entry {
            name: name.to_string(),
            hash: hash.to_string(),
            roles: fields
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_names_hashes_and_roles() {
        let entries = parse("# users\nfred: $argon2id$x, admin, user\n\n! old\nbarney:$argon2id$y\n")
            .unwrap();
        assert_eq!(entries[0].name, "fred");
        assert_eq!(entries[0].hash, "$argon2id$x");
        assert_eq!(entries[0].roles, ["admin", "user"]);
        assert_eq!(entries[1].name, "barney");
        assert!(entries[1].roles.is_empty());
    }

    #[test]
    fn a_bad_line_is_named() {
        assert_eq!(parse("a: h\nno colon here\n").unwrap_err().0, 2);
        assert_eq!(parse("a: h\na: g\n").unwrap_err().0, 2);
        assert_eq!(parse(": h\n").unwrap_err().0, 1);
    }
}
