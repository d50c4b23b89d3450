//! A small blocking HTTP client (reqwest on a runtime of its own), for code that
//! is not async: a benchmark's main thread, a probe thread.

use std::time::Duration;

pub struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    /// A client whose requests time out after `timeout`; a fresh connection
    /// each time (a daemon closes idle ones during long runs, and a probe should
    /// see what a new client sees).
    pub fn new(timeout: Duration) -> Self {
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::builder()
                .timeout(timeout)
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
        }
    }

    /// The status and body of `GET url` (with a bearer token, if given).
    pub fn get(&self, url: &str, token: Option<&str>) -> Result<(u16, Vec<u8>), reqwest::Error> {
        self.rt.block_on(async {
            let mut req = self.client.get(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await?;
            let status = r.status().as_u16();
            Ok((status, r.bytes().await?.to_vec()))
        })
    }
}
