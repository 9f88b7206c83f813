//! Blocking HTTP GETs for a command-line tool: a small runtime of its own
//! around reqwest, with a short timeout so a hung endpoint reads as down.

use std::time::Duration;

use anyhow::Context as _;

const TIMEOUT: Duration = Duration::from_secs(3);

pub struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

/// A basic-auth login.
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
}

impl Http {
    pub fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP runtime")?;
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Self { runtime, client })
    }

    /// The body of a 2xx answer to GET `url`; any other status is an error
    /// naming it.
    pub fn get(&self, url: &str, login: Option<&Login>) -> anyhow::Result<String> {
        self.runtime.block_on(async {
            let mut request = self.client.get(url);
            if let Some(login) = login {
                request = request.basic_auth(login.user, Some(login.password));
            }
            let response = request.send().await.with_context(|| format!("GET {url}"))?;
            let status = response.status();
            let body = response
                .text()
                .await
                .with_context(|| format!("GET {url}"))?;
            anyhow::ensure!(status.is_success(), "GET {url}: HTTP {status}");
            Ok(body)
        })
    }
}
