//! Just enough GraphQL to route a request: which operation of the document runs, and of
//! what type. The engine never executes the document; the mock decides the result, so a
//! full parser (with its weight in the Worker bundle) would buy nothing here. The lexer
//! follows the GraphQL spec's lexical grammar (names, punctuators, strings, block strings,
//! comments) so braces inside strings and comments never confuse it.

use serde_json::Value;

use crate::model::OperationType;
use crate::request::{MAX_PARSED_BODY_BYTES, Request, RequestView, too_deep};

/// A GraphQL request, as sent over HTTP (GET query string or POST JSON body, or a POST
/// `application/graphql` body).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphqlRequest {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Value,
}

/// The operation a request runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub operation_type: OperationType,
    /// `None` for an anonymous operation.
    pub name: Option<String>,
}

/// Reads the GraphQL request out of an HTTP request.
pub fn read_request(request: &Request) -> Result<GraphqlRequest, String> {
    let view = RequestView::new(request, vec![]);
    let from_parts = |query: Option<&str>, name: Option<&str>, variables: Option<Value>| {
        let query = query.filter(|q| !q.trim().is_empty()).ok_or("the request has no 'query'")?;
        let variables = match variables {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err("'variables' must be an object".to_owned()),
        };
        Ok(GraphqlRequest {
            query: query.to_owned(),
            operation_name: name.filter(|n| !n.is_empty()).map(str::to_owned),
            variables,
        })
    };
    if request.method == "GET" {
        let variables = match view.query("variables") {
            Some(text) if !too_deep(text.as_bytes()) => Some(
                serde_json::from_str(text).map_err(|e| format!("'variables' is not JSON: {e}"))?,
            ),
            Some(_) => return Err("'variables' nests too deeply".into()),
            None => None,
        };
        return from_parts(view.query("query"), view.query("operationName"), variables);
    }
    if request.body.len() > MAX_PARSED_BODY_BYTES {
        return Err(format!("the body is larger than {MAX_PARSED_BODY_BYTES} bytes"));
    }
    let content_type = view.header("content-type").unwrap_or_default().to_ascii_lowercase();
    if content_type.starts_with("application/graphql") && !content_type.contains("json") {
        let text = view.text().ok_or("the body is not UTF-8 text")?;
        return from_parts(Some(text), view.query("operationName"), None);
    }
    let body = view.json().ok_or("the body is not a JSON GraphQL request")?;
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    if body.get("query").is_some_and(|q| !q.is_string()) {
        return Err("'query' must be a string".into());
    }
    from_parts(field("query"), field("operationName"), body.get("variables").cloned())
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Name(&'a str),
    Punct(u8),
}

fn lex(source: &str) -> Result<Vec<Token<'_>>, String> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => i += 3,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                loop {
                    if i >= bytes.len() {
                        return Err("unterminated block string".into());
                    }
                    if bytes[i..].starts_with(b"\\\"\"\"") {
                        i += 4;
                    } else if bytes[i..].starts_with(b"\"\"\"") {
                        i += 3;
                        break;
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n' | b'\r') => return Err("unterminated string".into()),
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push(Token::Name(&source[start..i]));
            }
            b'-' | b'0'..=b'9' | b'.' => {
                // Numbers and the spread `...`: their content never matters for routing.
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
            }
            b'{' | b'}' | b'(' | b')' | b'[' | b']' | b'!' | b'$' | b':' | b'=' | b'@' | b'|'
            | b'&' => {
                out.push(Token::Punct(c));
                i += 1;
            }
            other => return Err(format!("unexpected character '{}'", other as char)),
        }
    }
    Ok(out)
}

/// The operations a document defines, in order.
pub fn operations(document: &str) -> Result<Vec<Operation>, String> {
    let tokens = lex(document).map_err(|e| format!("the query is not valid GraphQL: {e}"))?;
    let mut ops = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            // `{ … }` at the top level: the query shorthand, an anonymous query.
            Token::Punct(b'{') => {
                ops.push(Operation { operation_type: OperationType::Query, name: None });
                i = skip_group(&tokens, i)?;
            }
            Token::Name(keyword @ ("query" | "mutation" | "subscription" | "fragment")) => {
                let name = match tokens.get(i + 1) {
                    Some(Token::Name(n)) => Some((*n).to_owned()),
                    _ => None,
                };
                let operation_type = match keyword {
                    "query" => Some(OperationType::Query),
                    "mutation" => Some(OperationType::Mutation),
                    "subscription" => Some(OperationType::Subscription),
                    _ => None,
                };
                if let Some(operation_type) = operation_type {
                    ops.push(Operation { operation_type, name });
                }
                // Past the name, variable definitions, type condition and directives to the
                // selection set, then over it.
                i += 1;
                while i < tokens.len() && tokens[i] != Token::Punct(b'{') {
                    i = if tokens[i] == Token::Punct(b'(') {
                        skip_group(&tokens, i)?
                    } else {
                        i + 1
                    };
                }
                if i == tokens.len() {
                    return Err(format!(
                        "the query is not valid GraphQL: a {keyword} has no selection set"
                    ));
                }
                i = skip_group(&tokens, i)?;
            }
            Token::Punct(b'}' | b')' | b']') => {
                return Err("the query is not valid GraphQL: unbalanced brackets".into());
            }
            _ => i += 1,
        }
    }
    if ops.is_empty() {
        return Err("the query defines no operation".into());
    }
    Ok(ops)
}

/// The index just past the bracket group that opens at `start`.
fn skip_group(tokens: &[Token<'_>], start: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    for (j, token) in tokens.iter().enumerate().skip(start) {
        match token {
            Token::Punct(b'{' | b'(' | b'[') => depth += 1,
            Token::Punct(b'}' | b')' | b']') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(j + 1);
                }
            }
            _ => {}
        }
    }
    Err("the query is not valid GraphQL: unbalanced brackets".into())
}

/// The operation `request` runs: the one named `operationName`, or the only one.
pub fn select_operation(request: &GraphqlRequest) -> Result<Operation, String> {
    let ops = operations(&request.query)?;
    match &request.operation_name {
        Some(name) => ops
            .into_iter()
            .find(|op| op.name.as_deref() == Some(name))
            .ok_or_else(|| format!("the query defines no operation named '{name}'")),
        None if ops.len() == 1 => Ok(ops.into_iter().next().unwrap_or_else(|| unreachable!())),
        None => Err("the query defines several operations: 'operationName' is required".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(t: OperationType, name: Option<&str>) -> Operation {
        Operation { operation_type: t, name: name.map(str::to_owned) }
    }

    #[test]
    fn finds_operations() {
        use OperationType::*;
        let cases: &[(&str, Result<Vec<Operation>, &str>)] = &[
            ("{ me { id } }", Ok(vec![op(Query, None)])),
            ("query { me }", Ok(vec![op(Query, None)])),
            (
                "query GetUser($id: ID! = \"{\") @cached { user(id: $id) { ...F } }",
                Ok(vec![op(Query, Some("GetUser"))]),
            ),
            (
                "# comment {\nmutation AddUser($u: In = {a: [1, 2]}) { add(u: $u) { id } }\nfragment F on User { id name }\nsubscription OnUser { user { id } }",
                Ok(vec![op(Mutation, Some("AddUser")), op(Subscription, Some("OnUser"))]),
            ),
            ("query A { a(s: \"\"\" } \"\"\") }", Ok(vec![op(Query, Some("A"))])),
            ("query A { a", Err("unbalanced")),
            ("}", Err("unbalanced")),
            ("query A { a(s: \"open) }", Err("unterminated string")),
            ("fragment F on T { a }", Err("no operation")),
            ("", Err("no operation")),
            ("query A { a } ~", Err("unexpected character")),
        ];
        for (doc, want) in cases {
            match (operations(doc), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{doc}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{doc}: {got}"),
                (got, want) => panic!("{doc}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn reads_requests_and_selects() {
        let post = |body: &str, ct: &str| Request {
            method: "POST".into(),
            path: "/".into(),
            headers: vec![("content-type".into(), ct.to_owned().into())],
            body: body.as_bytes().to_vec(),
            ..Default::default()
        };
        let r = read_request(&post(
            r#"{"query": "query A { a } query B { b }", "operationName": "B", "variables": {"x": 1}}"#,
            "application/json",
        ))
        .unwrap();
        assert_eq!(select_operation(&r).unwrap(), op(OperationType::Query, Some("B")));
        assert_eq!(r.variables, serde_json::json!({"x": 1}));
        let r = read_request(&post("query A { a } query B { b }", "application/json")).unwrap_err();
        assert!(r.contains("not a JSON"), "{r}");
        let r = read_request(&post("mutation M { m }", "application/graphql")).unwrap();
        assert_eq!(select_operation(&r).unwrap(), op(OperationType::Mutation, Some("M")));
        let get = Request {
            method: "GET".into(),
            query: "query=query%20Q%7Bq%7D&variables=%7B%22a%22%3A1%7D".into(),
            ..Default::default()
        };
        let r = read_request(&get).unwrap();
        assert_eq!(select_operation(&r).unwrap(), op(OperationType::Query, Some("Q")));
        assert_eq!(r.variables, serde_json::json!({"a": 1}));
        for (body, want) in [
            (r#"{"query": 5}"#, "must be a string"),
            (r#"{"variables": {}}"#, "no 'query'"),
            (r#"{"query": "{a}", "variables": [1]}"#, "must be an object"),
        ] {
            let e = read_request(&post(body, "application/json")).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
        let several =
            read_request(&post(r#"{"query": "query A { a } query B { b }"}"#, "application/json"))
                .unwrap();
        assert!(select_operation(&several).unwrap_err().contains("operationName"));
        let named = GraphqlRequest { operation_name: Some("C".into()), ..several };
        assert!(select_operation(&named).unwrap_err().contains("no operation named 'C'"));
    }
}
