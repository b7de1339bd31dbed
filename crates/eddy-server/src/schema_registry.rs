//! A client of a Confluent-compatible Schema Registry (`ksql.schema.registry.url`): registers the
//! schemas of sinks and sources, and fetches writers' schemas by id (cached: ids never change).
//!
//! Lookups happen inside record decoding, which is synchronous and may run on a Tokio worker, so each
//! uncached call is made by a short-lived thread outside any runtime with a blocking HTTP client.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use eddy_common::{Error, Result};
use eddy_runtime::registry::{RegisteredSchema, SchemaKind, SchemaRegistry};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const TIMEOUT: Duration = Duration::from_secs(30);

/// How the registry is reached beyond its URL: ksqlDB's `ksql.schema.registry.*` settings.
#[derive(Debug, Clone, Default)]
pub struct RegistryAccess {
    /// HTTP Basic credentials (`ksql.schema.registry.basic.auth.user.info`, `user:password`).
    pub user_info: Option<String>,
    /// PEM certificates the registry's HTTPS certificate is checked against, besides the system's
    /// (`ksql.schema.registry.ssl.truststore.location`).
    pub ca_pem: Option<Vec<u8>>,
}

/// A Schema Registry reached over HTTP or HTTPS.
#[derive(Debug)]
pub struct HttpRegistry {
    url: String,
    access: RegistryAccess,
    by_id: Mutex<HashMap<u32, RegisteredSchema>>,
    registered: Mutex<HashMap<(String, RegisteredSchema), u32>>,
}

impl HttpRegistry {
    /// A client of the registry at `url` (e.g. `http://localhost:8081`).
    pub fn new(url: &str) -> Self {
        HttpRegistry::with_access(url, RegistryAccess::default())
    }

    /// A client of the registry at `url` reached as `access` says.
    pub fn with_access(url: &str, access: RegistryAccess) -> Self {
        HttpRegistry {
            url: url.trim_end_matches('/').to_string(),
            access,
            by_id: Mutex::default(),
            registered: Mutex::default(),
        }
    }

    /// Sends one request; `Ok(None)` when the registry answers 404.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Option<Value>> {
        let url = format!("{}{path}", self.url);
        let method = method.to_string();
        let access = &self.access;
        let outcome = std::thread::scope(|s| {
            s.spawn(move || -> std::result::Result<(u16, String), String> {
                let mut builder = reqwest::blocking::Client::builder().timeout(TIMEOUT);
                if let Some(pem) = &access.ca_pem {
                    for certificate in
                        reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())?
                    {
                        builder = builder.add_root_certificate(certificate);
                    }
                }
                let client = builder.build().map_err(|e| e.to_string())?;
                let request = match method.as_str() {
                    "POST" => client
                        .post(&url)
                        .header("Content-Type", CONTENT_TYPE)
                        .body(body.unwrap_or(Value::Null).to_string()),
                    _ => client.get(&url),
                };
                let request = match &access.user_info {
                    Some(info) => {
                        let (user, password) = info.split_once(':').unwrap_or((info, ""));
                        request.basic_auth(user, Some(password))
                    }
                    None => request,
                };
                let response = request
                    .header("Accept", CONTENT_TYPE)
                    .send()
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                Ok((status, response.text().map_err(|e| e.to_string())?))
            })
            .join()
        });
        let (status, text) = outcome
            .map_err(|_| Error::Internal("the schema registry call panicked".to_string()))?
            .map_err(|e| {
                Error::External(format!(
                    "The schema registry at {} cannot be reached: {e}",
                    self.url
                ))
            })?;
        match status {
            404 => Ok(None),
            200..=299 => serde_json::from_str(&text).map(Some).map_err(|e| {
                Error::External(format!("The schema registry answered with bad JSON: {e}"))
            }),
            _ => Err(Error::External(format!(
                "The schema registry at {} answered {status}: {text}",
                self.url
            ))),
        }
    }
}

/// The schema in a registry answer (`schema`, with `schemaType` absent for Avro).
fn schema_of(answer: &Value) -> Result<RegisteredSchema> {
    let text = answer
        .get("schema")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::External(format!(
                "The schema registry's answer has no schema: {answer}"
            ))
        })?;
    Ok(RegisteredSchema {
        kind: SchemaKind::from_name(answer.get("schemaType").and_then(Value::as_str)),
        text: text.to_string(),
    })
}

fn id_of(answer: &Value) -> Result<u32> {
    answer
        .get("id")
        .and_then(Value::as_u64)
        .map(|id| id as u32)
        .ok_or_else(|| Error::External(format!("The schema registry's answer has no id: {answer}")))
}

/// A subject as a URL path segment.
fn segment(subject: &str) -> String {
    subject
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl SchemaRegistry for HttpRegistry {
    fn register(&self, subject: &str, schema: &RegisteredSchema) -> Result<u32> {
        let key = (subject.to_string(), schema.clone());
        if let Some(id) = self
            .registered
            .lock()
            .ok()
            .and_then(|m| m.get(&key).copied())
        {
            return Ok(id);
        }
        let mut body = json!({"schema": schema.text});
        if schema.kind != SchemaKind::Avro {
            body["schemaType"] = json!(schema.kind.as_str());
        }
        let answer = self
            .call(
                "POST",
                &format!("/subjects/{}/versions", segment(subject)),
                Some(body),
            )?
            .ok_or_else(|| {
                Error::External(format!("The schema registry has no subject {subject}"))
            })?;
        let id = id_of(&answer)?;
        if let Ok(mut m) = self.registered.lock() {
            m.insert(key, id);
        }
        if let Ok(mut m) = self.by_id.lock() {
            m.insert(id, schema.clone());
        }
        Ok(id)
    }

    fn latest(&self, subject: &str) -> Result<Option<(u32, RegisteredSchema)>> {
        match self.call(
            "GET",
            &format!("/subjects/{}/versions/latest", segment(subject)),
            None,
        )? {
            Some(answer) => Ok(Some((id_of(&answer)?, schema_of(&answer)?))),
            None => Ok(None),
        }
    }

    fn by_id(&self, id: u32) -> Result<RegisteredSchema> {
        if let Some(s) = self.by_id.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(s);
        }
        let answer = self
            .call("GET", &format!("/schemas/ids/{id}"), None)?
            .ok_or_else(|| {
                Error::Execution(format!("Schema {id} not found in the schema registry"))
            })?;
        let schema = schema_of(&answer)?;
        if let Ok(mut m) = self.by_id.lock() {
            m.insert(id, schema.clone());
        }
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_escaped_in_paths() {
        assert_eq!(segment("orders-value"), "orders-value");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
