//! `ckpt-migrate plugin new NAME --lang rust|python|js [--kind transformer|filter]`: a
//! ready plugin project — source, SDK, the WIT, a build script, a README and a sample
//! migration — that builds and passes `plugin check` unchanged.
//!
//! The templates live in `plugins/templates/`; the SDKs and the WIT are the ones this
//! binary was built with, copied in, so a project builds without this repository.

use std::path::{Path, PathBuf};

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
}

/// What a new plugin is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PluginKind {
    /// Keeps, drops, patches or rejects records.
    #[default]
    Transformer,
    /// Keeps, drops or rejects records (runs before the transformers).
    Filter,
}

const WIT: &str = include_str!("../../../wit/v0.1.0/plugin.wit");
const README: &str = include_str!("../../../plugins/templates/README.md.tmpl");
const PYTHON_SDK: &str = include_str!("../../../plugins/sdk-python/ckpt_migrate_plugin.py");
const PYTHON_TRANSFORMER: &str = include_str!("../../../plugins/templates/python/transformer.py");
const PYTHON_FILTER: &str = include_str!("../../../plugins/templates/python/filter.py");
const PYTHON_BUILD: &str = include_str!("../../../plugins/templates/python/build.sh");
const PYTHON_REQUIREMENTS: &str =
    include_str!("../../../plugins/templates/python/requirements.txt");
const JS_SDK: &str = include_str!("../../../plugins/sdk-js/ckpt-migrate-plugin.js");
const JS_TRANSFORMER: &str = include_str!("../../../plugins/templates/js/transformer.js");
const JS_FILTER: &str = include_str!("../../../plugins/templates/js/filter.js");
const JS_PACKAGE: &str = include_str!("../../../plugins/templates/js/package.json");
const JS_BUILD: &str = include_str!("../../../plugins/templates/js/build.mjs");
const RUST_SDK: &str = include_str!("../../../plugins/sdk/src/lib.rs");
const RUST_SDK_CARGO: &str = include_str!("../../../plugins/templates/rust/sdk-Cargo.toml");
const RUST_CARGO: &str = include_str!("../../../plugins/templates/rust/Cargo.toml");
const RUST_TRANSFORMER: &str = include_str!("../../../plugins/templates/rust/transformer.rs");
const RUST_FILTER: &str = include_str!("../../../plugins/templates/rust/filter.rs");
const RUST_BUILD: &str = include_str!("../../../plugins/templates/rust/build.sh");

/// One file of the project: its path in the project, its text, whether it runs.
struct File {
    path: &'static str,
    text: String,
    executable: bool,
}

/// What was made.
#[derive(Debug)]
pub struct Created {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// How to build it, from the project's folder.
    pub build: String,
}

/// Writes the project `name` in `dir` (default `./name`), refusing to touch an existing,
/// non-empty folder.
pub fn create(
    name: &str,
    language: Language,
    kind: PluginKind,
    dir: Option<&Path>,
) -> Result<Created, String> {
    check_name(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .next()
            .is_some()
    {
        return Err(format!(
            "{} exists and is not empty: choose another name or --dir",
            dir.display()
        ));
    }
    let (files, build) = project(name, language, kind);
    let mut written = Vec::new();
    for file in files {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, &file.text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if file.executable {
            make_executable(&path)?;
        }
        written.push(path);
    }
    Ok(Created {
        dir,
        files: written,
        build,
    })
}

/// Plugin names become file, crate and package names: lowercase letters, digits, `-`
/// and `_`, starting with a letter.
fn check_name(name: &str) -> Result<(), String> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "plugin name {name:?}: use lowercase letters, digits, `-` and `_`, starting with a letter (at most 64)"
        ))
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} executable: {e}", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// Fills `{{key}}` placeholders.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

/// The files of a project and its build command.
fn project(name: &str, language: Language, kind: PluginKind) -> (Vec<File>, String) {
    let world = match kind {
        PluginKind::Transformer => "transformer-plugin",
        PluginKind::Filter => "filter-plugin",
    };
    let crate_name = name.replace('-', "_");
    let values = [
        ("name", name),
        ("world", world),
        ("crate", crate_name.as_str()),
    ];
    let file = |path: &'static str, template: &str| File {
        path,
        text: fill(template, &values),
        executable: false,
    };
    let script = |path: &'static str, template: &str| File {
        executable: true,
        ..file(path, template)
    };
    let pick = |transformer: &'static str, filter: &'static str| match kind {
        PluginKind::Transformer => transformer,
        PluginKind::Filter => filter,
    };
    let (mut files, build, source, sdk_note) = match language {
        Language::Python => (
            vec![
                file("app.py", pick(PYTHON_TRANSFORMER, PYTHON_FILTER)),
                File {
                    path: "ckpt_migrate_plugin.py",
                    text: PYTHON_SDK.to_owned(),
                    executable: false,
                },
                script("build.sh", PYTHON_BUILD),
                file("requirements.txt", PYTHON_REQUIREMENTS),
            ],
            "pip install -r requirements.txt && ./build.sh",
            "app.py",
            "`ckpt_migrate_plugin.py` is the SDK (records, outcomes, logging). Import every \
             module at the top of app.py: the build snapshots the interpreter, and nothing \
             can be imported later.",
        ),
        Language::Js => (
            vec![
                file("app.js", pick(JS_TRANSFORMER, JS_FILTER)),
                File {
                    path: "ckpt-migrate-plugin.js",
                    text: JS_SDK.to_owned(),
                    executable: false,
                },
                file("package.json", JS_PACKAGE),
                file("build.mjs", JS_BUILD),
            ],
            "npm install && npm run build",
            "app.js",
            "`ckpt-migrate-plugin.js` is the SDK (records, outcomes, logging).",
        ),
        Language::Rust => (
            vec![
                file("Cargo.toml", RUST_CARGO),
                file("src/lib.rs", pick(RUST_TRANSFORMER, RUST_FILTER)),
                File {
                    path: "sdk/Cargo.toml",
                    text: RUST_SDK_CARGO.to_owned(),
                    executable: false,
                },
                File {
                    path: "sdk/src/lib.rs",
                    // The SDK finds the WIT beside it in a project.
                    text: RUST_SDK.replace("\"../../wit/v0.1.0\"", "\"../wit\""),
                    executable: false,
                },
                script("build.sh", RUST_BUILD),
            ],
            "./build.sh",
            "src/lib.rs",
            "`sdk/` is the SDK crate (records, outcomes, logging).",
        ),
    };
    let sample_config = match kind {
        PluginKind::Transformer => r#"{"team": "support"}"#,
        PluginKind::Filter => r#"{"prefix": "customer-"}"#,
    };
    let language_name = match language {
        Language::Rust => "Rust",
        Language::Python => "Python",
        Language::Js => "JavaScript",
    };
    let kind_name = match kind {
        PluginKind::Transformer => "transformer",
        PluginKind::Filter => "filter",
    };
    files.push(File {
        path: "README.md",
        text: fill(
            README,
            &[
                ("name", name),
                ("kind", kind_name),
                ("language", language_name),
                ("build", build),
                ("sample_config", sample_config),
                ("source", source),
                ("sdk_note", sdk_note),
            ],
        ),
        executable: false,
    });
    files.push(File {
        path: "wit/plugin.wit",
        text: WIT.to_owned(),
        executable: false,
    });
    files.push(File {
        path: "migration.yaml",
        text: sample_migration(name, kind, sample_config),
        executable: false,
    });
    files.push(File {
        path: ".gitignore",
        text: "*.wasm\ntarget/\nnode_modules/\n__pycache__/\n".into(),
        executable: false,
    });
    (files, build.to_owned())
}

fn sample_migration(name: &str, kind: PluginKind, config: &str) -> String {
    let (section, indent) = match kind {
        PluginKind::Transformer => ("transformers:", ""),
        PluginKind::Filter => ("filters:\n  plugins:", "  "),
    };
    format!(
        "# Moves a SqliteSaver database to JSON through {name}:\n\
         #   ckpt-migrate --config migration.yaml --dry-run\n\
         source_type: sqlite\n\
         source_config:\n  connection_string: sqlite:///checkpoints.db\n\
         destination_type: json\n\
         destination_config:\n  output_dir: ./out\n\
         {section}\n\
         {indent}  - path: ./{name}.wasm\n\
         {indent}    config: {config}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("tag-team_2").is_ok());
        for bad in ["", "Tag", "2tag", "tag team", "tag/x", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn projects_have_no_placeholders_left_and_the_sdk_finds_its_wit() {
        for language in [Language::Rust, Language::Python, Language::Js] {
            for kind in [PluginKind::Transformer, PluginKind::Filter] {
                let (files, _) = project("my-plugin", language, kind);
                for f in &files {
                    assert!(!f.text.contains("{{"), "{language:?} {kind:?} {}", f.path);
                }
                let yaml = files
                    .iter()
                    .find(|f| f.path == "migration.yaml")
                    .expect("yaml");
                let parsed: serde_yaml::Value = serde_yaml::from_str(&yaml.text).expect("yaml");
                let plugins = match kind {
                    PluginKind::Transformer => &parsed["transformers"],
                    PluginKind::Filter => &parsed["filters"]["plugins"],
                };
                assert_eq!(plugins[0]["path"], "./my-plugin.wasm");
                if language == Language::Rust {
                    let sdk = files
                        .iter()
                        .find(|f| f.path == "sdk/src/lib.rs")
                        .expect("sdk");
                    assert!(sdk.text.contains("path: \"../wit\""));
                }
            }
        }
    }
}
