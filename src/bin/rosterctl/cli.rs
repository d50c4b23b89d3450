//! The command line: every command, flag and environment variable `rosterctl` takes.
//! Parsing only; the handlers live in the sibling modules.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Token: --token / ROSTERD_TOKEN, or --token-file / ROSTERD_TOKEN_FILE; with neither,
./data/admin.token (rosterd writes <data_dir>/admin.token on its first start).
A flag on the command line wins over an environment variable.

Exit codes: 0 done; 1 rosterd refused (its message is printed) or some items failed;
2 usage error (bad flags, no token, no confirmation); 3 cannot reach rosterd.";

#[derive(Parser)]
#[command(
    name = "rosterctl",
    version,
    about = "Admin CLI for rosterd: talks to the daemon's admin API over HTTP",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Base URL of rosterd's HTTP listener.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "ROSTERD_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Admin token (prefer --token-file: arguments are visible to other local users).
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "ROSTERD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// File holding the admin token [default: ./data/admin.token].
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "ROSTERD_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// Give up on a request after this many seconds.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "ROSTERD_TIMEOUT",
        default_value_t = 60,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// List, show, add, edit, activate and deactivate employee profiles.
    #[command(subcommand)]
    Employees(EmployeesCommand),
    /// Activate, deactivate, send an invite or a password reset to many employees at
    /// once, after a dry run and a confirmation.
    Bulk(BulkArgs),
    /// Show the outbox (invitations and resets waiting, sent, dead) and retry dead ones.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Show the audit log (newest first): who changed what, and when.
    Audit(AuditArgs),
    /// Show the catalogs: roles (with default permissions), positions, business units.
    Catalog(CatalogArgs),
    /// Directory sync: sources, runs (with dry run), run history, approval of held plans.
    #[command(subcommand)]
    Sync(SyncCommand),
}

#[derive(Subcommand)]
pub enum SyncCommand {
    /// List the configured sources with their last run.
    Sources(JsonArg),
    /// Run a source now (full unless --incremental); --dry-run prints the plan only.
    Run(SyncRunArgs),
    /// Run history, newest first.
    Runs(SyncRunsArgs),
    /// One run: outcome, counts, errors and its plan.
    Show(RunArgs),
    /// Apply a held plan (one that exceeded the deactivation threshold).
    Approve(ApproveArgs),
}

#[derive(Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SyncRunArgs {
    /// Source id.
    pub source: String,
    /// A full run (the default): sees every entry, deactivates those gone.
    #[arg(long, conflicts_with = "incremental")]
    pub full: bool,
    /// Only entries changed since the last run; deactivates nobody by absence.
    #[arg(long)]
    pub incremental: bool,
    /// Build and print the plan, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the run's summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SyncRunsArgs {
    /// Only this source's runs.
    pub source: Option<String>,
    /// Show at most N runs.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// Run id.
    pub run: u64,
    /// Print the summary as JSON with the whole plan (`"plan": [...]`),
    /// streamed page by page.
    #[arg(long)]
    pub json: bool,
    /// Print the whole plan, page by page (without it: its first 100 items).
    #[arg(long)]
    pub plan: bool,
}

#[derive(Args)]
pub struct ApproveArgs {
    /// Run id of the held plan.
    pub run: u64,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Subcommand)]
pub enum EmployeesCommand {
    /// List employees (active ones unless --inactive or --all).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one employee, by id, email or username.
    Show(ShowArgs),
    /// Add an employee.
    Add(Box<AddArgs>),
    /// Change some fields of an employee; fields not given are kept.
    Edit(Box<EditArgs>),
    /// Activate an employee (active profiles can sign in).
    Activate(KeyArgs),
    /// Deactivate an employee: the profile is kept but cannot sign in.
    Deactivate(KeyArgs),
    /// Upload or remove an employee's photo.
    #[command(subcommand)]
    Photo(PhotoCommand),
    /// Which client or sync source set each field, and when.
    Explain(ShowArgs),
}

/// `col=value`, as `--filter` takes it.
#[derive(Clone, Debug)]
pub struct Filter {
    pub column: String,
    pub value: String,
}

/// Why a `--filter` argument is refused (clap prints it).
#[derive(Debug, thiserror::Error)]
enum FilterArgError {
    #[error("`{0}` is not COLUMN=VALUE (e.g. role=Technician)")]
    NoEquals(String),
    #[error("`{0}` has no column before `=`")]
    NoColumn(String),
}

fn parse_filter(raw: &str) -> Result<Filter, FilterArgError> {
    let (column, value) = raw
        .split_once('=')
        .ok_or_else(|| FilterArgError::NoEquals(raw.to_string()))?;
    let column = column.trim();
    if column.is_empty() {
        return Err(FilterArgError::NoColumn(raw.to_string()));
    }
    Ok(Filter {
        column: column.to_string(),
        value: value.to_string(),
    })
}

#[derive(Args)]
#[command(group(ArgGroup::new("status").args(["inactive", "all"])))]
pub struct ListArgs {
    /// Only inactive employees.
    #[arg(long)]
    pub inactive: bool,
    /// Active and inactive employees.
    #[arg(long)]
    pub all: bool,
    /// Only employees whose COLUMN matches VALUE (repeatable). Columns: name, email,
    /// username (substring), position, role, business_unit, enabled, account_status,
    /// source (the owning sync source, or none), mail_status (queued, sent, failed,
    /// skipped, none).
    #[arg(long, value_name = "COLUMN=VALUE", value_parser = parse_filter)]
    pub filter: Vec<Filter>,
    /// Sort by a column (e.g. name, email, role, created_at); prefix - for descending.
    #[arg(long, value_name = "COLUMN", allow_hyphen_values = true)]
    pub sort: Option<String>,
    /// Show at most N employees.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print a JSON array of the employees, as the API returns them.
    #[arg(long)]
    pub json: bool,
    /// Employees per request while following pages.
    #[arg(long, hide = true, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub page_size: u64,
}

#[derive(Args)]
pub struct ShowArgs {
    /// Employee id, email or username.
    #[arg(value_name = "ID|EMAIL")]
    pub key: String,
    /// Print the employee as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct KeyArgs {
    /// Employee id, email or username.
    #[arg(value_name = "ID|EMAIL")]
    pub key: String,
    /// Print the employee as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How the account is set up (`account_status`).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatusArg {
    /// Username and password are set up later.
    Later,
    /// Email an invitation; the employee picks a username and password.
    Invite,
    /// Username and password given now (the password with --password-stdin).
    Credentials,
}

/// Field flags `add` and `edit` share.
#[derive(Args)]
pub struct ProfileFlags {
    /// Display name [default on add: "GIVEN FAMILY"; on edit, "" resets to that].
    #[arg(long)]
    pub display_name: Option<String>,
    /// Sign-in name [default on add: the email].
    #[arg(long)]
    pub username: Option<String>,
    /// A position from the catalog (repeatable; on edit, replaces all positions).
    #[arg(long = "position", value_name = "POSITION")]
    pub positions: Vec<String>,
    /// The role, from the catalog; it sets the default permissions.
    #[arg(long)]
    pub role: Option<String>,
    /// The business unit, from the catalog.
    #[arg(long)]
    pub business_unit: Option<String>,
    /// Link to a photo.
    #[arg(long)]
    pub photo_url: Option<String>,
    /// Mobile phone number.
    #[arg(long)]
    pub mobile_phone: Option<String>,
    /// Office phone number.
    #[arg(long)]
    pub office_phone: Option<String>,
    /// Office phone extension (on edit alone, keeps the number; "" removes it).
    #[arg(long)]
    pub extension: Option<String>,
    /// Account setup: later, invite, or credentials (needs --password-stdin).
    #[arg(long, value_enum)]
    pub status: Option<AccountStatusArg>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Grant a permission on top of the role's defaults (repeatable).
    #[arg(long = "grant", value_name = "PERMISSION")]
    pub grant: Vec<String>,
    /// Revoke one of the role's default permissions (repeatable).
    #[arg(long = "revoke", value_name = "PERMISSION")]
    pub revoke: Vec<String>,
    /// Id of the profile in an external system.
    #[arg(long)]
    pub external_id: Option<String>,
    /// Print the employee as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct AddArgs {
    /// Given (first) name. A profile needs one of --given-name, --family-name
    /// or --display-name (one-part names are real).
    #[arg(long, default_value = "")]
    pub given_name: String,
    /// Family (last) name; optional.
    #[arg(long, default_value = "")]
    pub family_name: String,
    /// Unique across all profiles, ignoring letter case.
    #[arg(long)]
    pub email: String,
    #[command(flatten)]
    pub profile: ProfileFlags,
    /// Create with the "Enabled" toggle off (no user in the fleet product).
    #[arg(long)]
    pub disabled: bool,
    /// Create the profile inactive (it cannot sign in).
    #[arg(long)]
    pub inactive: bool,
}

#[derive(Args)]
#[command(group(ArgGroup::new("enabled").args(["enable", "disable"])))]
pub struct EditArgs {
    /// Employee id, email or username.
    #[arg(value_name = "ID|EMAIL")]
    pub key: String,
    /// Given (first) name.
    #[arg(long)]
    pub given_name: Option<String>,
    /// Family (last) name.
    #[arg(long)]
    pub family_name: Option<String>,
    /// New email (unique across all profiles, ignoring letter case).
    #[arg(long)]
    pub email: Option<String>,
    #[command(flatten)]
    pub profile: ProfileFlags,
    /// Add a position (repeatable).
    #[arg(long = "add-position", value_name = "POSITION")]
    pub add_positions: Vec<String>,
    /// Remove a position (repeatable).
    #[arg(long = "remove-position", value_name = "POSITION")]
    pub remove_positions: Vec<String>,
    /// Remove the business unit.
    #[arg(long, conflicts_with = "business_unit")]
    pub clear_business_unit: bool,
    /// Remove the mobile phone.
    #[arg(long, conflicts_with = "mobile_phone")]
    pub clear_mobile_phone: bool,
    /// Remove the office phone and its extension.
    #[arg(long, conflicts_with_all = ["office_phone", "extension"])]
    pub clear_office_phone: bool,
    /// Remove the photo (link or upload).
    #[arg(long, conflicts_with = "photo_url")]
    pub clear_photo: bool,
    /// Remove the external id.
    #[arg(long, conflicts_with = "external_id")]
    pub clear_external_id: bool,
    /// Drop all permission overrides (then apply --grant/--revoke, if given).
    #[arg(long)]
    pub clear_permissions: bool,
    /// Turn the "Enabled" toggle on.
    #[arg(long)]
    pub enable: bool,
    /// Turn the "Enabled" toggle off.
    #[arg(long)]
    pub disable: bool,
}

#[derive(Subcommand)]
pub enum PhotoCommand {
    /// Upload a PNG, JPEG or WebP file as the employee's photo.
    Set {
        /// Employee id, email or username.
        #[arg(value_name = "ID|EMAIL")]
        key: String,
        /// The image (.png, .jpg, .jpeg or .webp).
        file: PathBuf,
    },
    /// Remove the employee's photo.
    Remove {
        /// Employee id, email or username.
        #[arg(value_name = "ID|EMAIL")]
        key: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    Activate,
    Deactivate,
    /// Email an invitation (refused for accounts already set up, and inactive ones).
    SendInvite,
    /// Email a password-reset link (refused for inactive profiles and accounts not set up).
    SendPasswordReset,
}

#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true).args(["ids", "filter"])))]
pub struct BulkArgs {
    /// What to do with the employees.
    #[arg(value_enum)]
    pub action: BulkAction,
    /// Employee ids (space- or comma-separated).
    #[arg(long, num_args = 1.., value_delimiter = ',', value_name = "ID")]
    pub ids: Vec<String>,
    /// Every employee (active or not) whose COLUMN matches VALUE (repeatable; see
    /// `employees list --help`).
    #[arg(long, value_name = "COLUMN=VALUE", value_parser = parse_filter)]
    pub filter: Vec<Filter>,
    /// Do not ask for confirmation (needed when standard input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Only show what would change.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
}

#[derive(Args)]
pub struct AuditArgs {
    /// Only entries about this employee (id, email or username).
    #[arg(long, value_name = "ID|EMAIL")]
    pub employee: Option<String>,
    /// Show at most N entries.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Print a JSON array of the entries.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum OutboxCommand {
    /// List outbox messages, oldest first (never their links).
    #[command(visible_alias = "ls")]
    List {
        /// Only messages that gave up after the maximum number of attempts.
        #[arg(long)]
        dead: bool,
        /// Print a JSON array of the messages.
        #[arg(long)]
        json: bool,
        /// Messages asked per request (every page is fetched).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1000))]
        page_size: u64,
    },
    /// Queue a dead (or waiting) message for another round of attempts now.
    Retry {
        /// The message id (from `outbox list`).
        id: u64,
    },
}

#[derive(Args)]
pub struct CatalogArgs {
    /// Print the catalog as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn filters_split_on_the_first_equals_sign() {
        let f = parse_filter("name=a=b").expect("valid");
        assert_eq!((f.column.as_str(), f.value.as_str()), ("name", "a=b"));
        assert!(parse_filter("role").is_err());
        assert!(parse_filter("=x").is_err());
    }
}
