//! Mail: SMTP sessions (lettre's SMTP client over a connection made here, with
//! `TCP_NODELAY`), the message templates and the outbox worker.
//!
//! Messages are never sent from a request: the domain writes their intent to the
//! outbox (in the store, in the same transaction as the change that causes them)
//! and the [`worker::MailWorker`] mints their links and delivers them with
//! retries, one SMTP connection per batch. Message bodies carry one-time links
//! and are never logged or stored.

pub mod config;
pub mod templates;
pub mod worker;

use std::future::Future;

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
#[allow(deprecated)]
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use config::{MailConfig, TlsMode};
use templates::{Rendered, Templates};

/// What can go wrong building or sending a message.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid recipient `{0}`: {1}")]
    Recipient(String, String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("SMTP {host}:{port}: {message}")]
    Smtp {
        host: String,
        port: u16,
        message: String,
    },
    #[error("cannot set up TLS for {0}: {1}")]
    Tls(String, String),
}

/// The SMTP settings, the sender and the templates: cheap to clone. Messages go
/// out through a [`Session`]: one SMTP connection, reused for every message of
/// a batch.
#[derive(Clone)]
pub struct Mailer {
    config: MailConfig,
    /// For `starttls` and `implicit`: checked once, at start.
    tls: Option<TlsParameters>,
    templates: Templates,
}

impl Mailer {
    /// Checks the TLS settings (no connection yet) and loads template overrides.
    pub fn new(config: MailConfig) -> Result<Self, anyhow::Error> {
        use anyhow::Context;
        let templates = Templates::load(&config.templates_dir).with_context(|| {
            format!(
                "while loading mail templates from {} (fix or remove the file)",
                config.templates_dir.display()
            )
        })?;
        let tls = match config.tls {
            TlsMode::None => None,
            TlsMode::Starttls | TlsMode::Implicit => Some(
                TlsParameters::new(config.host.clone())
                    .map_err(|e| MailError::Tls(config.host.clone(), e.to_string()))?,
            ),
        };
        Ok(Self {
            config,
            tls,
            templates,
        })
    }

    pub fn config(&self) -> &MailConfig {
        &self.config
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Builds a multipart (plain + HTML) message to `to`.
    pub fn message(&self, to: &str, name: &str, r: Rendered) -> Result<Message, MailError> {
        let addr = to.parse().map_err(|e: lettre::address::AddressError| {
            MailError::Recipient(to.to_string(), e.to_string())
        })?;
        let mut b = Message::builder()
            .from(self.config.from.clone())
            .to(Mailbox::new(Some(name.to_string()), addr))
            .subject(r.subject);
        if let Some(rt) = &self.config.reply_to {
            b = b.reply_to(rt.clone());
        }
        b.multipart(MultiPart::alternative_plain_html(r.text, r.html))
            .map_err(|e| MailError::Build(e.to_string()))
    }

    fn smtp_error(&self, message: impl std::fmt::Display) -> MailError {
        MailError::Smtp {
            host: self.config.host.clone(),
            port: self.config.port,
            message: message.to_string(),
        }
    }

    /// Bounds one SMTP step by `timeout_secs`.
    async fn timed<T, E: std::fmt::Display>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, MailError> {
        match tokio::time::timeout(self.config.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.smtp_error(format!("{what}: {e}"))),
            Err(_) => Err(self.smtp_error(format!(
                "{what}: no answer within {} s",
                self.config.timeout.as_secs_f64()
            ))),
        }
    }

    /// Opens an SMTP session: connects, greets, secures and authenticates as
    /// configured. The socket has `TCP_NODELAY` set: lettre writes each command,
    /// a message's body and its final `.` as separate small writes, and with
    /// Nagle's algorithm on, the dot waited for the server's delayed ACK of the
    /// body (about 40 ms per message). lettre's own connect does not set it, so
    /// the connection is made here and handed to lettre: as is for `none`, then
    /// upgraded by lettre for `starttls`; for `implicit`, wrapped first in
    /// lettre's own TLS stream (its rustls setup and certificate checks).
    pub async fn connect(&self) -> Result<Session, MailError> {
        let c = &self.config;
        let hello = ClientId::default();
        let tcp = self
            .timed(
                "connect",
                tokio::net::TcpStream::connect((c.host.as_str(), c.port)),
            )
            .await?;
        tcp.set_nodelay(true)
            .map_err(|e| self.smtp_error(format!("TCP_NODELAY: {e}")))?;
        let stream: Box<dyn AsyncTokioStream> = match (&c.tls, &self.tls) {
            (TlsMode::Implicit, Some(tls)) => {
                #[allow(deprecated)]
                let mut s = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
                self.timed("TLS handshake", s.upgrade_tls(tls.clone()))
                    .await?;
                Box::new(tls_stream::Tls(s))
            }
            _ => Box::new(tcp),
        };
        let mut conn = self
            .timed(
                "greeting",
                AsyncSmtpConnection::connect_with_transport(stream, &hello),
            )
            .await?;
        if let (TlsMode::Starttls, Some(tls)) = (&c.tls, &self.tls) {
            self.timed("STARTTLS", conn.starttls(tls.clone(), &hello))
                .await?;
        }
        if let Some((user, pass)) = &c.credentials {
            let creds = Credentials::new(user.clone(), pass.expose().to_string());
            self.timed("AUTH", conn.auth(DEFAULT_MECHANISMS, &creds))
                .await?;
        }
        Ok(Session {
            mailer: self.clone(),
            conn: Some(conn),
        })
    }

    /// `rosterd send-test-email`: a short message proving the settings.
    pub async fn send_test(&self, to: &str) -> Result<(), MailError> {
        let company = &self.config.company_name;
        let r = Rendered {
            subject: format!("rosterd test message for {company}"),
            text: format!(
                "This is a test message from rosterd for {company}.\n\
                 If you can read it, the [mail] settings work.\n"
            ),
            html: format!(
                "<p>This is a test message from rosterd for {}.</p>\
                 <p>If you can read it, the [mail] settings work.</p>",
                company.replace('<', "&lt;")
            ),
        };
        let m = self.message(to, to, r)?;
        let mut session = self.connect().await?;
        let sent = session.send(&m).await;
        session.quit().await;
        sent
    }
}

/// One SMTP connection, reused message after message (the outbox worker opens
/// one per batch). A failure that leaves the connection unusable drops it; the
/// next [`Session::send`] connects again.
pub struct Session {
    mailer: Mailer,
    conn: Option<AsyncSmtpConnection>,
}

impl Session {
    /// Sends one message; `Ok` means the SMTP server accepted it.
    pub async fn send(&mut self, m: &Message) -> Result<(), MailError> {
        let mut conn = match self.conn.take() {
            Some(c) if !c.has_broken() => c,
            _ => self.mailer.connect().await?.into_conn()?,
        };
        let bytes = m.formatted();
        let r = self
            .mailer
            .timed("send", conn.send(m.envelope(), &bytes))
            .await;
        // lettre closes the connection on any error; a timeout leaves it in an
        // unknown state. Either way the next message connects again.
        if r.is_ok() {
            self.conn = Some(conn);
        }
        r.map(|_| ())
    }

    fn into_conn(mut self) -> Result<AsyncSmtpConnection, MailError> {
        self.conn
            .take()
            .ok_or_else(|| self.mailer.smtp_error("the connection was closed"))
    }

    /// Ends the session politely (QUIT), bounded by the timeout.
    pub async fn quit(mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(self.mailer.config.timeout, c.quit()).await;
        }
    }
}

/// lettre's TLS stream as a tokio stream, so that a TLS connection rosterd made
/// (with `TCP_NODELAY`) can be handed to lettre's SMTP client: lettre's
/// `AsyncNetworkStream` speaks the `futures` I/O traits, its client takes tokio's.
mod tls_stream {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures::io::{AsyncRead as _, AsyncWrite as _};
    #[allow(deprecated)]
    use lettre::transport::smtp::client::AsyncNetworkStream;
    use tokio::io::ReadBuf;

    #[allow(deprecated)]
    #[derive(Debug)]
    pub struct Tls(pub AsyncNetworkStream);

    impl tokio::io::AsyncRead for Tls {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let dst = buf.initialize_unfilled();
            match Pin::new(&mut self.0).poll_read(cx, dst) {
                Poll::Ready(Ok(n)) => {
                    buf.advance(n);
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    impl tokio::io::AsyncWrite for Tls {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_close(cx)
        }
    }

    impl lettre::transport::smtp::client::AsyncTokioStream for Tls {
        fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
            self.0.peer_addr()
        }
    }
}
