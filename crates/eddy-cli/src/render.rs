//! Renders server entities and query rows as text tables.

use serde_json::Value;

/// A boxed text table, as wide as its cells or, on a terminal, no wider than it: then the widest
/// columns are narrowed and their cells wrapped onto more lines.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    table_within(headers, rows, terminal_width())
}

/// [`table`] within `limit` characters (none: as wide as the cells).
pub fn table_within(headers: &[&str], rows: &[Vec<String>], limit: Option<usize>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    // Each column takes its width, a space either side and a separator.
    if let Some(limit) = limit {
        fit(&mut widths, limit.saturating_sub(3 * headers.len()));
    }
    let rule: String = widths
        .iter()
        .map(|w| "-".repeat(w + 2))
        .collect::<Vec<_>>()
        .join("-");
    let lines = |cells: Vec<&str>| -> String {
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| wrap(c, *w))
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        (0..height)
            .map(|i| {
                let line = wrapped
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!(" {:<w$} ", c.get(i).map_or("", String::as_str)))
                    .collect::<Vec<_>>()
                    .join("|");
                format!("{}\n", line.trim_end())
            })
            .collect()
    };
    let mut out = String::new();
    out.push_str(&lines(headers.to_vec()));
    out.push_str(&rule);
    out.push('\n');
    for r in rows {
        out.push_str(&lines(r.iter().map(String::as_str).collect()));
    }
    out.push_str(&rule);
    out.push('\n');
    out
}

/// The terminal's width in columns when standard output is one.
fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer it is given, which lives for the call.
    let got = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (got == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// Narrows the widest columns, one character at a time, until the widths add up to `total` or every
/// column is down to [`NARROWEST`].
fn fit(widths: &mut [usize], total: usize) {
    while widths.iter().sum::<usize>() > total {
        let Some(widest) = widths.iter_mut().filter(|w| **w > NARROWEST).max() else {
            return;
        };
        *widest -= 1;
    }
}

/// The narrowest a column is made to fit a terminal.
const NARROWEST: usize = 6;

/// A cell's text in lines of at most `width` characters, broken after a space when one is in the
/// last two thirds of a line.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width || width == 0 {
        return vec![text.to_string()];
    }
    let mut lines = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = (start + width).min(chars.len());
        if end < chars.len()
            && let Some(space) = chars[start..end].iter().rposition(|c| *c == ' ')
            && space >= width / 3
        {
            end = start + space + 1;
        }
        lines.push(
            chars[start..end]
                .iter()
                .collect::<String>()
                .trim_end()
                .to_string(),
        );
        start = end;
    }
    lines
}

/// A statement's error pointed at: when the message names a position in the statement (`line 1:10:
/// ...`, as the server reports syntax errors), that line of the statement with a caret under the
/// column, then the message; else the message alone.
pub fn error_at(statement: &str, message: &str) -> String {
    let position = message.strip_prefix("line ").and_then(|rest| {
        let (line, rest) = rest.split_once(':')?;
        let (column, _) = rest.split_once(':')?;
        Some((line.parse::<usize>().ok()?, column.parse::<usize>().ok()?))
    });
    let pointed = position.and_then(|(line, column)| {
        let text = statement.lines().nth(line.checked_sub(1)?)?;
        let before: String = text
            .chars()
            .take(column.checked_sub(1)?)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        (before.chars().count() + 1 == column).then(|| format!("{text}\n{before}^\n"))
    });
    format!("{}{message}", pointed.unwrap_or_default())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Renders one `/ksql` entity.
pub fn entity(e: &Value) -> String {
    match e["@type"].as_str().unwrap_or_default() {
        "currentStatus" => table(&["Message"], &[vec![s(&e["commandStatus"]["message"])]]),
        "streams" | "tables" => {
            let (key, title) = if e["@type"] == "streams" {
                ("streams", "Stream Name")
            } else {
                ("tables", "Table Name")
            };
            let mut rows: Vec<Vec<String>> = e[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    vec![
                        s(&x["name"]),
                        s(&x["topic"]),
                        s(&x["keyFormat"]),
                        s(&x["valueFormat"]),
                        s(&x["isWindowed"]),
                    ]
                })
                .collect();
            rows.sort();
            table(
                &[
                    title,
                    "Kafka Topic",
                    "Key Format",
                    "Value Format",
                    "Windowed",
                ],
                &rows,
            )
        }
        "queries" => {
            let rows: Vec<Vec<String>> = e["queries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|q| {
                    vec![
                        s(&q["id"]),
                        s(&q["queryType"]),
                        s(&q["state"]),
                        s(&q["sinks"][0]),
                        s(&q["sinkKafkaTopics"][0]),
                        s(&q["queryString"]),
                    ]
                })
                .collect();
            table(
                &[
                    "Query ID",
                    "Query Type",
                    "Status",
                    "Sink Name",
                    "Sink Kafka Topic",
                    "Query String",
                ],
                &rows,
            ) + "For detailed information on a Query run: SHOW QUERIES EXTENDED;\n"
        }
        "query_descriptions" => {
            let rows: Vec<Vec<String>> = e["queryDescriptions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|q| {
                    let st = &q["statistics"];
                    vec![
                        s(&q["id"]),
                        s(&q["state"]),
                        s(&st["consumed"]),
                        s(&st["produced"]),
                        s(&st["skippedRecords"]),
                        s(&q["queryErrors"][0]["errorMessage"]),
                    ]
                })
                .collect();
            table(
                &[
                    "Query ID",
                    "Status",
                    "Consumed",
                    "Produced",
                    "Skipped",
                    "Last Error",
                ],
                &rows,
            )
        }
        "kafka_topics" => {
            let rows: Vec<Vec<String>> = e["topics"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let parts = t["replicaInfo"].as_array().map(|a| a.len()).unwrap_or(0);
                    vec![s(&t["name"]), parts.to_string(), s(&t["replicaInfo"][0])]
                })
                .collect();
            table(&["Kafka Topic", "Partitions", "Partition Replicas"], &rows)
        }
        "properties" => {
            let rows: Vec<Vec<String>> = e["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| vec![s(&p["name"]), s(&p["scope"]), s(&p["value"])])
                .collect();
            table(&["Property", "Scope", "Effective Value"], &rows)
        }
        "variables" => {
            let rows: Vec<Vec<String>> = e["variables"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| vec![s(&v["name"]), s(&v["value"])])
                .collect();
            table(&["Variable Name", "Value"], &rows)
        }
        "function_names" => {
            let rows: Vec<Vec<String>> = e["functions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    vec![
                        s(&f["name"]),
                        s(&f["type"]),
                        s(&f["category"]),
                        s(&f["source"]),
                    ]
                })
                .collect();
            table(&["Function Name", "Type", "Category", "Source"], &rows)
        }
        "describe_function" => {
            let mut out = format!(
                "Name        : {}\nAuthor      : {}\nVersion     : {}\nOverview    : {}\nType        : {}\nPath        : {}\n",
                s(&e["name"]),
                s(&e["author"]),
                s(&e["version"]),
                s(&e["description"]),
                s(&e["type"]),
                s(&e["path"])
            );
            if e["sha256"].is_string() {
                out.push_str(&format!("SHA-256     : {}\n", s(&e["sha256"])));
            }
            for f in e["functions"].as_array().into_iter().flatten() {
                let args: Vec<String> = f["arguments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        let dots = if a["isVariadic"] == true { "..." } else { "" };
                        format!("{} {}{dots}", s(&a["name"]), s(&a["type"]))
                    })
                    .collect();
                out.push_str(&format!(
                    "\n\tVariation   : {}({})\n\tReturns     : {}\n\tDescription : {}\n",
                    s(&e["name"]),
                    args.join(", "),
                    s(&f["returnType"]),
                    s(&f["description"])
                ));
            }
            out
        }
        "sourceDescription" => {
            let d = &e["sourceDescription"];
            let mut out = format!("Name                 : {}\n", s(&d["name"]));
            if d["extended"] == true {
                out.push_str(&format!(
                    "Type                 : {}\nKey format           : {}\nValue format         : {}\nKafka topic          : {} (partitions: {}, replication: {})\nStatistics           : {}\nErrors               : {}\n",
                    s(&d["type"]), s(&d["keyFormat"]), s(&d["valueFormat"]), s(&d["topic"]), s(&d["partitions"]), s(&d["replication"]), s(&d["statistics"]), s(&d["errorStats"])
                ));
            }
            let rows: Vec<Vec<String>> = d["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    let key = if f["type"] == "KEY" { " (key)" } else { "" };
                    vec![s(&f["name"]), format!("{}{key}", s(&f["schema"]["type"]))]
                })
                .collect();
            out + &table(&["Field", "Type"], &rows)
        }
        "connector_list" => {
            let rows: Vec<Vec<String>> = e["connectors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    vec![
                        s(&c["name"]),
                        s(&c["type"]),
                        s(&c["className"]),
                        s(&c["state"]),
                    ]
                })
                .collect();
            table(&["Connector Name", "Type", "Class", "Status"], &rows)
        }
        "connector_description" => format!(
            "Name         : {}\nClass        : {}\nType         : {}\nState        : {}\nMQTT         : {} {}\nKafka topics : {}\nMessages     : {}\n",
            s(&e["status"]["name"]),
            s(&e["connectorClass"]),
            s(&e["status"]["type"]),
            s(&e["status"]["connector"]["state"]),
            s(&e["mqttServer"]),
            list(&e["mqttTopics"]),
            list(&e["topics"]),
            s(&e["messages"])
        ),
        "models" => {
            let rows: Vec<Vec<String>> = e["models"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    vec![
                        s(&m["name"]),
                        list(&m["versions"]),
                        aliases(&m["aliases"]),
                        s(&m["features"]),
                    ]
                })
                .collect();
            table(&["Model", "Versions", "Aliases", "Features"], &rows)
        }
        "model_description" => {
            let mut out = format!(
                "Model   : {}\nAliases : {}\n",
                s(&e["name"]),
                aliases(&e["aliases"])
            );
            let versions: Vec<Vec<String>> = e["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    let sha = s(&v["sha256"]);
                    vec![
                        s(&v["version"]),
                        v["features"].as_array().map_or(0, Vec::len).to_string(),
                        s(&v["threshold"]),
                        s(&v["validation"]["false_alarms_per_car_hour"]),
                        sha.get(..12).unwrap_or(&sha).to_string(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "Version",
                    "Features",
                    "Threshold",
                    "False alarms/h",
                    "SHA-256",
                ],
                &versions,
            ));
            let queries: Vec<Vec<String>> = e["queries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|q| vec![s(&q["queryId"]), s(&q["uses"]), s(&q["versions"])])
                .collect();
            if !queries.is_empty() {
                out.push_str(&table(&["Query", "Uses", "Version now"], &queries));
            }
            out
        }
        _ => format!("{}\n", serde_json::to_string_pretty(e).unwrap_or_default()),
    }
}

/// `1, 2, 3` of a JSON list.
fn list(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `production → 2, candidate → 3` of a JSON object of aliases.
fn aliases(v: &Value) -> String {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(a, version)| format!("{a} → {}", s(version)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints push/pull query rows as they arrive.
pub struct RowPrinter {
    json: bool,
    widths: Vec<usize>,
    started: bool,
}

impl RowPrinter {
    /// A printer for tables or JSON lines.
    pub fn new(json: bool) -> Self {
        RowPrinter {
            json,
            widths: Vec::new(),
            started: false,
        }
    }

    /// Prints the header from a schema string like `` `A` STRING, `B` INT ``.
    pub fn header(&mut self, schema: &str) {
        let names: Vec<String> = schema
            .split(", `")
            .map(|c| {
                c.trim_start_matches('`')
                    .split('`')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        if self.json {
            println!("{}", serde_json::json!({"header": {"schema": schema}}));
            return;
        }
        self.widths = names.iter().map(|n| n.len().max(18)).collect();
        // Each column takes its width and a bar; on a terminal, no wider than it.
        if let Some(limit) = terminal_width() {
            fit(&mut self.widths, limit.saturating_sub(names.len() + 1));
        }
        self.rule();
        self.print_row(&names);
        self.rule();
        self.started = true;
    }

    fn rule(&self) {
        println!(
            "+{}+",
            self.widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("+")
        );
    }

    /// Prints one row.
    pub fn row(&mut self, columns: &Value, tombstone: bool) {
        if self.json {
            println!("{}", serde_json::json!({"columns": columns}));
            return;
        }
        let cells: Vec<String> = columns
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                if tombstone && v.is_null() {
                    "<TOMBSTONE>".to_string()
                } else {
                    s(v)
                }
            })
            .collect();
        self.print_row(&cells);
    }

    /// One row's cells, each wrapped within its column.
    fn print_row(&self, cells: &[String]) {
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .zip(&self.widths)
            .map(|(c, w)| wrap(c, *w))
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        for i in 0..height {
            println!(
                "|{}|",
                wrapped
                    .iter()
                    .zip(&self.widths)
                    .map(|(c, w)| format!("{:<w$}", c.get(i).map_or("", String::as_str)))
                    .collect::<Vec<_>>()
                    .join("|")
            );
        }
    }

    /// Closes the table.
    pub fn finish(&mut self) {
        if self.started && !self.json {
            self.rule();
            self.started = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_long_cell_wraps_within_the_width_given() {
        let query = "CREATE STREAM HOT AS SELECT SENSOR_ID, TS, TEMP * 1.8 + 32 AS TEMP_F FROM READINGS WHERE TEMP > 25 AND RPM > 1000 EMIT CHANGES;".repeat(20);
        let rows = vec![vec![
            "CSAS_HOT_1".to_string(),
            "RUNNING".to_string(),
            query.clone(),
        ]];
        let text = table_within(&["Query ID", "Status", "Query String"], &rows, Some(100));
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        assert!(text.lines().count() > 20, "{text}");
        // Every character of the cell is there, in order, across its lines.
        let cell: String = text
            .lines()
            .skip(2)
            .filter_map(|l| l.split('|').nth(2))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(cell.replace(' ', ""), query.replace(' ', ""));
        // Without a width, one line per row as before.
        assert_eq!(
            table_within(&["A"], &[vec![query.clone()]], None)
                .lines()
                .count(),
            4
        );
    }

    #[test]
    fn an_error_with_a_position_points_at_it() {
        let message = "line 2:3: Syntax Error\nUnexpected 'FORM'";
        assert_eq!(
            error_at("SELECT *\n  FORM t;", message),
            format!("  FORM t;\n  ^\n{message}")
        );
        // No position, or one outside the statement: the message alone.
        assert_eq!(
            error_at("SELECT 1;", "Unknown column X"),
            "Unknown column X"
        );
        assert_eq!(error_at("SELECT 1;", "line 4:1: x"), "line 4:1: x");
        assert_eq!(error_at("SELECT 1;", "line 1:40: x"), "line 1:40: x");
    }

    #[test]
    fn connectors_render_as_ksqldb_does() {
        let listed = json!({"@type": "connector_list", "connectors": [
            {"name": "CARS", "type": "SOURCE", "className": "MqttSource", "state": "RUNNING"}]});
        let out = entity(&listed);
        assert!(
            out.contains("CARS") && out.contains("MqttSource") && out.contains("RUNNING"),
            "{out}"
        );
        let described = json!({"@type": "connector_description", "connectorClass": "MqttSource",
            "status": {"name": "CARS", "connector": {"state": "RUNNING"}, "type": "source"},
            "topics": ["telemetry"], "mqttServer": "tcp://h:1883", "mqttTopics": ["cars/+/telemetry"],
            "messages": 42});
        let out = entity(&described);
        assert!(
            out.contains("cars/+/telemetry") && out.contains("Messages     : 42"),
            "{out}"
        );
    }

    #[test]
    fn models_render_with_versions_aliases_and_users() {
        let list = json!({"@type": "models", "models": [
            {"name": "car_ae", "versions": [1, 2], "latest": 2, "aliases": {"production": 1}, "features": 28}]});
        let out = entity(&list);
        assert!(
            out.contains("car_ae") && out.contains("1, 2") && out.contains("production → 1"),
            "{out}"
        );
        let described = json!({"@type": "model_description", "name": "car_ae", "aliases": {"production": 2},
            "versions": [{"version": 2, "sha256": "0123456789abcdef", "features": ["a", "b"], "threshold": 3.5,
                          "validation": {"false_alarms_per_car_hour": 0.4}}],
            "queries": [{"queryId": "CSAS_ALERTS_0", "uses": "car_ae@production", "versions": "2"}]});
        let out = entity(&described);
        assert!(
            out.contains("0123456789ab\n")
                && !out.contains("cdef")
                && out.contains("0.4")
                && out.contains("car_ae@production"),
            "{out}"
        );
    }

    #[test]
    fn streams_render_as_a_sorted_table() {
        let e = json!({"@type": "streams", "streams": [
            {"name": "B", "topic": "b", "keyFormat": "KAFKA", "valueFormat": "JSON", "isWindowed": false},
            {"name": "A", "topic": "a", "keyFormat": "KAFKA", "valueFormat": "JSON", "isWindowed": false}]});
        let out = entity(&e);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with(" Stream Name | Kafka Topic"), "{out}");
        assert!(lines[2].starts_with(" A "), "{out}");
        assert!(lines[3].starts_with(" B "), "{out}");
    }
}
