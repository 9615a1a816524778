//! The CLI's HTTP client for the desk's REST API.

use reqwest::{Method, StatusCode};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no desk URL: pass --url, set CERTDESK_URL, or put url = \"…\" in the config file")]
    NoUrl,
    #[error(
        "no API token: pass --token, set CERTDESK_TOKEN, or put token = \"…\" in the config file"
    )]
    NoToken,
    #[error("cannot reach the desk at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// The desk answered with a problem document; `detail` says why.
    #[error("{detail}")]
    Api {
        status: StatusCode,
        detail: String,
        body: Value,
    },
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(url: Option<String>, token: Option<String>) -> Result<Client, ClientError> {
        let base = url.filter(|u| !u.is_empty()).ok_or(ClientError::NoUrl)?;
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(ClientError::NoToken)?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("HTTP client builds"),
        })
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, Value), ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .query(query);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        };
        let res = req.send().await.map_err(unreachable)?;
        let status = res.status();
        let text = res.text().await.map_err(unreachable)?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok((status, body));
        }
        let detail = body
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("the desk answered {status}"));
        Err(ClientError::Api {
            status,
            detail,
            body,
        })
    }

    /// A POST whose answer is a file, not JSON.
    pub async fn post_bytes(&self, path: &str, body: &Value) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{}", self.base, path);
        let unreachable = |source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        };
        let res = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(unreachable)?.to_vec();
        if status.is_success() {
            return Ok(bytes);
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let detail = body
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("the desk answered {status}"));
        Err(ClientError::Api {
            status,
            detail,
            body,
        })
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        Ok(self.call(Method::GET, path, query, None, &[]).await?.1)
    }

    pub async fn post(
        &self,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        Ok(self.call(Method::POST, path, &[], body, headers).await?.1)
    }
}
