//! Mail: the lettre SMTP transport, the message templates and the outbox worker.
//!
//! Messages are never sent from a request: the domain writes them to the outbox
//! (in the store, in the same transaction as the change that causes them) and the
//! [`worker::MailWorker`] delivers them with retries. Message bodies carry one-time
//! links and are never logged.

pub mod config;
pub mod templates;
pub mod worker;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

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

/// The SMTP transport, the sender and the templates: cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    config: MailConfig,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    templates: Templates,
}

impl Mailer {
    /// Builds the transport (no connection yet) and loads template overrides.
    pub fn new(config: MailConfig) -> Result<Self, anyhow::Error> {
        use anyhow::Context;
        let templates = Templates::load(&config.templates_dir).with_context(|| {
            format!(
                "while loading mail templates from {} (fix or remove the file)",
                config.templates_dir.display()
            )
        })?;
        let transport = transport(&config)?;
        Ok(Self {
            config,
            transport,
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

    /// Sends one message; `Ok` means the SMTP server accepted it.
    pub async fn send(&self, m: Message) -> Result<(), MailError> {
        self.transport
            .send(m)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Smtp {
                host: self.config.host.clone(),
                port: self.config.port,
                message: e.to_string(),
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
        self.send(m).await
    }
}

fn transport(c: &MailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let tls_params = || {
        TlsParameters::new(c.host.clone())
            .map_err(|e| MailError::Tls(c.host.clone(), e.to_string()))
    };
    let tls = match c.tls {
        TlsMode::None => Tls::None,
        TlsMode::Starttls => Tls::Required(tls_params()?),
        TlsMode::Implicit => Tls::Wrapper(tls_params()?),
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.clone())
        .port(c.port)
        .tls(tls)
        .timeout(Some(c.timeout));
    if let Some((user, pass)) = &c.credentials {
        b = b.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
    }
    Ok(b.build())
}
