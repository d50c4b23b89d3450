//! `rosterctl catalog`: the roles (with default permissions), positions, business
//! units and permission names profiles draw from.

use comfy_table::{Table, presets};

use crate::cli::CatalogArgs;
use crate::client::{Client, decode};
use crate::error::CtlError;
use crate::model::{Catalog, CatalogEntry};
use crate::output;

pub async fn run(client: &Client, a: CatalogArgs) -> Result<(), CtlError> {
    let v = client.get(&["catalog"], &[]).await?;
    if a.json {
        return output::emit_json(&v);
    }
    let c: Catalog = decode(v, "catalog")?;
    output::emit_lines(&catalog_lines(&c))
}

fn section(title: &str, entries: &[CatalogEntry], default: Option<&str>) -> Vec<String> {
    let mut lines = vec![format!("{title}:")];
    if entries.is_empty() {
        lines.push("  (none)".into());
        return lines;
    }
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    for e in entries {
        let name = if default.is_some_and(|d| d.eq_ignore_ascii_case(&e.name)) {
            format!("{} (default)", e.name)
        } else {
            e.name.clone()
        };
        let mut detail = e.description.clone();
        if !e.permissions.is_empty() {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(&format!("permissions: {}", e.permissions.join(", ")));
        }
        table.add_row(vec![name, detail]);
    }
    lines.extend(table.lines().map(|l| format!(" {}", l.trim_end())));
    lines
}

fn catalog_lines(c: &Catalog) -> Vec<String> {
    let mut lines = section("roles", &c.roles, c.default_role.as_deref());
    lines.extend(section("positions", &c.positions, None));
    lines.extend(section("business_units", &c.business_units, None));
    lines.push("permissions:".into());
    lines.push(format!("  {}", c.permissions.join(", ")));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_role_is_marked() {
        let c = Catalog {
            roles: vec![CatalogEntry {
                name: "Technician".into(),
                description: "Field work".into(),
                permissions: vec!["jobs.view".into()],
            }],
            default_role: Some("Technician".into()),
            permissions: vec!["jobs.view".into()],
            ..Default::default()
        };
        let text = catalog_lines(&c).join("\n");
        assert!(text.contains("Technician (default)"));
        assert!(text.contains("Field work; permissions: jobs.view"));
        assert!(text.contains("positions:\n  (none)"));
    }
}
