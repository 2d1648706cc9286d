//! The published OpenAPI document: the handlers' annotations, completed with what every route
//! of a kind may answer, so that the document names every status the server can send.
//!
//! The handlers declare what is particular to them (their body, their 409s and 422s). Here each
//! operation gains the answers that the shared layers give: the body and query extractors
//! (400, 413, 415), authentication (401), the admin check (403), an id in the path (404), the
//! in-flight limit and deadlines (503); and every problem is `application/problem+json`. The
//! parameters the shared extractors read get those extractors' rules: an id in the path is a
//! positive integer, an `Idempotency-Key` 1 to 255 visible ASCII characters (spaces between).

use serde_json::{json, Map, Value};
use utoipa::openapi::OpenApi;

const PROBLEM: &str = "#/components/schemas/Problem";
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// `doc` with every operation's shared answers added and its problems typed.
pub(super) fn published(doc: OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).expect("an OpenAPI document serializes");
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            for method in METHODS {
                if let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) {
                    complete(path, operation);
                }
            }
        }
    }
    doc
}

/// Adds the answers the shared layers give to `operation`, types its problems, and states the
/// rules of its shared parameters.
fn complete(path: &str, operation: &mut Map<String, Value>) {
    for parameter in operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if parameter["in"] == "path" && parameter["schema"]["type"] == "integer" {
            parameter["schema"]["minimum"] = json!(1);
        }
        if parameter["name"] == "Idempotency-Key" {
            parameter["schema"] = json!({
                "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]([ -~]*[!-~])?$"
            });
        }
    }
    let has_body = operation.contains_key("requestBody");
    // An action's body (`{}`) is an object with no members named: it may be left out.
    if let Some(body) = operation.get_mut("requestBody") {
        if body["content"]["application/json"]["schema"] == json!({ "type": "object" }) {
            body["required"] = json!(false);
        }
    }
    let has_query = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let secured = operation.contains_key("security");
    let shared: [(&str, bool, &str); 7] = [
        (
            "400",
            has_body || has_query,
            "`VALIDATION_FAILED`: malformed JSON, a value of the wrong type or a missing field",
        ),
        (
            "401",
            secured,
            "`UNAUTHORIZED`: no bearer token, or not a valid one",
        ),
        (
            "403",
            path.starts_with("/api/admin/"),
            "`FORBIDDEN`: admins only",
        ),
        (
            "404",
            path.contains('{'),
            "`NOT_FOUND`: no resource has that id",
        ),
        (
            "413",
            has_body,
            "`PAYLOAD_TOO_LARGE`: the body is over the server's limit",
        ),
        (
            "415",
            has_body,
            "`UNSUPPORTED_MEDIA_TYPE`: the body is not sent as `application/json`",
        ),
        (
            "503",
            path.starts_with("/api/"),
            "`OVERLOADED` (too many requests in flight) or `UNAVAILABLE` (a dependency, or the \
             request's deadline)",
        ),
    ];
    let responses = operation
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses is an object");
    for (status, applies, description) in shared {
        if !applies {
            continue;
        }
        let response = responses.entry(status).or_insert_with(|| {
            json!({ "description": "", "content": { "application/json": { "schema": { "$ref": PROBLEM } } } })
        });
        if response["description"] == "" {
            response["description"] = json!(description);
        }
    }
    let events = stream_events(path);
    for (status, response) in responses.iter_mut() {
        type_problem(response);
        if let (Some(events), Some(stream)) = (
            &events,
            response
                .get_mut("content")
                .and_then(|content| content.get_mut("text/event-stream")),
        ) {
            stream["schema"] = events.clone();
        }
        if status == "429" || status == "503" {
            response["headers"]["Retry-After"] = json!({
                "description": "seconds to wait before trying again",
                "required": true,
                "schema": { "type": "integer", "minimum": 1 }
            });
        }
    }
}

/// The schema of one event of the stream at `path` (OpenAPI 3.1: a `text/event-stream` schema
/// describes each event): its name, and its `data` as the JSON it holds.
fn stream_events(path: &str) -> Option<Value> {
    let event = |name: &str, data: Value| {
        json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": { "const": name },
                "id": { "type": "string" },
                "data": { "type": "string", "contentMediaType": "application/json", "contentSchema": data }
            }
        })
    };
    let schema = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let events = match path {
        "/api/orders/{orderId}/events" => vec![event("status", schema("Order"))],
        "/api/coupon-tasks/{taskId}/events" => vec![event("result", schema("Task"))],
        "/api/room-places/{placeId}/events" => vec![event("place", schema("PlaceView"))],
        "/api/admin/ops/events" => vec![
            event("snapshot", schema("Snapshot")),
            event(
                "unavailable",
                json!({ "type": "object", "maxProperties": 0 }),
            ),
        ],
        _ => return None,
    };
    Some(json!({ "oneOf": events }))
}

/// Moves a `Problem` body from `application/json` to `application/problem+json`.
fn type_problem(response: &mut Value) {
    let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    if content
        .get("application/json")
        .is_some_and(|media| media["schema"]["$ref"] == PROBLEM)
    {
        let media = content.remove("application/json").expect("just seen");
        content.insert("application/problem+json".to_owned(), media);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_patterns(value: &Value, into: &mut Vec<String>) {
        match value {
            Value::Object(members) => {
                if let Some(Value::String(pattern)) = members.get("pattern") {
                    into.push(pattern.clone());
                }
                members.values().for_each(|v| collect_patterns(v, into));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_patterns(v, into)),
            _ => {}
        }
    }

    fn operation(doc: &Value, path: &str, method: &str) -> Value {
        doc["paths"][path][method].clone()
    }

    #[test]
    fn every_operation_names_the_answers_of_the_shared_layers_as_problems() {
        let doc = crate::http::openapi(crate::Role::All);
        let restock = operation(
            &doc,
            "/api/admin/product-options/{optionId}/restock",
            "post",
        );
        for status in ["400", "401", "403", "404", "413", "415", "422", "503"] {
            let answer = &restock["responses"][status];
            assert_eq!(
                answer["content"]["application/problem+json"]["schema"]["$ref"], PROBLEM,
                "restock {status}: {answer}"
            );
        }
        assert_eq!(
            restock["responses"]["503"]["headers"]["Retry-After"]["required"],
            true
        );
        let live = operation(&doc, "/health/live", "get");
        assert!(live["responses"].get("503").is_none(), "{live}");
        let product = operation(&doc, "/api/products/{productId}", "get");
        assert!(product["responses"].get("401").is_none(), "{product}");
        assert!(product["responses"].get("415").is_none(), "{product}");
        let mut patterns = Vec::new();
        collect_patterns(&doc, &mut patterns);
        for pattern in &patterns {
            assert!(
                [
                    db::text::PATTERN,
                    points::users::EMAIL_PATTERN,
                    "^[!-~]([ -~]*[!-~])?$"
                ]
                .contains(&pattern.as_str()),
                "a schema's pattern is not the server's rule: {pattern}"
            );
        }
        assert!(patterns.len() >= 7, "{patterns:?}");
        let text = doc.to_string();
        assert!(
            !text.contains(
                r##""application/json":{"schema":{"$ref":"#/components/schemas/Problem"}}"##
            ),
            "a problem is still typed application/json"
        );
    }
}
