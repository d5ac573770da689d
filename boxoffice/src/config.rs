//! Configuration files: TOML whose keys are the command's flags (`hold_ttl` for `--hold-ttl`).
//!
//! A file is not a second parser with defaults of its own: each key the command line and the
//! environment left unset becomes the flag it names, and clap parses it like any other flag, with
//! the same default, the same range check and the same type. A flag or its environment variable
//! wins over the file; the file wins over the default. Every flag of a command is thereby a key of
//! its file, and a key that names no flag is refused.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// The flag that names the file; it is not a key of the file itself.
pub const CONFIG_FLAG: &str = "config";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {source}")]
    Syntax { path: PathBuf, source: Box<toml::de::Error> },
    #[error("config {path}: unknown key `{key}`; the keys are the flags of `{command}`: {known}")]
    UnknownKey { path: PathBuf, key: String, command: String, known: String },
    #[error("config {path}: `{key}` = {value}: {why}")]
    Value { path: PathBuf, key: String, value: String, why: String },
}

/// The keys a file for `command` may hold: the ids of its flags, less `--config` and help.
pub fn keys(command: &Command) -> Vec<String> {
    command
        .get_arguments()
        .filter(|a| a.get_long().is_some())
        .map(|a| a.get_id().as_str().to_owned())
        .filter(|id| id != CONFIG_FLAG && id != "help")
        .collect()
}

/// The flags `path`'s keys stand for, for the keys `matches` got from neither the command line
/// nor the environment. Their values are checked when clap parses them with the command line.
pub fn file_flags(command: &Command, matches: &ArgMatches, path: &Path) -> Result<Vec<FileFlag>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| ConfigError::Syntax { path: path.to_owned(), source: Box::new(e) })?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        let Some(arg) = command.get_arguments().find(|a| a.get_id() == key.as_str() && key != CONFIG_FLAG) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
                command: command.get_name().to_owned(),
                known: keys(command).join(", "),
            });
        };
        let set_outside =
            matches!(matches.value_source(key), Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable));
        if set_outside {
            continue;
        }
        let bad = |why: &str| ConfigError::Value {
            path: path.to_owned(),
            key: key.clone(),
            value: show(value),
            why: why.into(),
        };
        let long = arg.get_long().ok_or_else(|| bad("not a flag"))?;
        let is_switch = matches!(arg.get_action(), ArgAction::SetTrue);
        for text in scalars(value).map_err(bad)? {
            if is_switch {
                match text.as_str() {
                    "true" => flags.push(FileFlag { key: key.clone(), value: show(value), arg: format!("--{long}") }),
                    "false" => {}
                    _ => return Err(bad("a switch is true or false")),
                }
                continue;
            }
            flags.push(FileFlag { key: key.clone(), value: show(value), arg: format!("--{long}={text}") });
        }
    }
    Ok(flags)
}

/// One flag a file's key stands for, with the key and value it came from, to name them if clap
/// refuses the value.
#[derive(Clone, Debug)]
pub struct FileFlag {
    key: String,
    value: String,
    arg: String,
}

/// A TOML value as the file wrote it, for messages.
fn show(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Array(items) => format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(", ")),
        toml::Value::Table(_) => "{…}".to_owned(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
    }
}

/// The texts a TOML value gives its flag: one for a scalar, one per item for a list.
fn scalars(value: &toml::Value) -> Result<Vec<String>, &'static str> {
    match value {
        toml::Value::String(s) => Ok(vec![s.clone()]),
        toml::Value::Integer(i) => Ok(vec![i.to_string()]),
        toml::Value::Float(f) => Ok(vec![f.to_string()]),
        toml::Value::Boolean(b) => Ok(vec![b.to_string()]),
        toml::Value::Array(items) => {
            let mut all = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    toml::Value::Array(_) | toml::Value::Table(_) => return Err("a list of lists is not a value"),
                    scalar => all.extend(scalars(scalar)?),
                }
            }
            Ok(all)
        }
        toml::Value::Datetime(_) | toml::Value::Table(_) => Err("expected a string, number, boolean or list"),
    }
}

/// clap's reason for refusing a value, without its usage banner.
fn clap_reason(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_owned()
}

/// Parses `argv`; when the subcommand has a `--config` file, with the file's flags appended (they
/// belong to the subcommand, which comes last on the line). A first, forgiving parse finds the
/// file and what the command line and environment set, so a required flag may come from the file.
pub fn parse_with_file(command: Command, argv: Vec<OsString>) -> Result<ArgMatches, ParseError> {
    let first = command.clone().ignore_errors(true).try_get_matches_from(&argv).map_err(ParseError::Clap)?;
    let mut flags = Vec::new();
    let mut path = PathBuf::new();
    if let Some((name, sub)) = first.subcommand() {
        if let Some(file) = sub.try_get_one::<PathBuf>(CONFIG_FLAG).ok().flatten() {
            let sub_command = command.find_subcommand(name).ok_or(ParseError::NoSubcommand)?;
            flags = file_flags(sub_command, sub, file).map_err(ParseError::Config)?;
            path = file.clone();
        }
    }
    let full = argv.into_iter().chain(flags.iter().map(|f| OsString::from(&f.arg)));
    command.try_get_matches_from(full).map_err(|e| match from_file(&e, &flags) {
        Some(flag) => ParseError::Config(ConfigError::Value {
            path,
            key: flag.key.clone(),
            value: flag.value.clone(),
            why: clap_reason(&e),
        }),
        None => ParseError::Clap(e),
    })
}

/// The file's flag clap refused, if the refusal is about one.
fn from_file<'a>(e: &clap::Error, flags: &'a [FileFlag]) -> Option<&'a FileFlag> {
    let Some(ContextValue::String(refused)) = e.get(ContextKind::InvalidArg) else { return None };
    let long = refused.split([' ', '=']).next()?;
    flags.iter().find(|f| f.arg.split('=').next() == Some(long))
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Clap(clap::Error),
    #[error(transparent)]
    Config(ConfigError),
    #[error("the subcommand vanished between two parses")]
    NoSubcommand,
}

#[cfg(test)]
mod tests {
    use clap::{Args, FromArgMatches, Parser, Subcommand};

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Subcommand, Debug)]
    enum Sub {
        Serve(ServeArgs),
    }

    #[derive(Args, Debug, PartialEq)]
    struct ServeArgs {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=10))]
        shards: u32,
        #[arg(long, env = "BOXOFFICE_CONFIG_TEST_NAME", default_value = "x")]
        name: String,
        #[arg(long)]
        quiet: bool,
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        #[arg(long)]
        secret: String,
    }

    fn parse(file: &str, args: &[&str]) -> Result<ServeArgs, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).expect("write");
        let mut argv: Vec<OsString> = vec!["t".into(), "serve".into(), "--config".into(), path.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        let matches = parse_with_file(<Cli as clap::CommandFactory>::command(), argv).map_err(|e| e.to_string())?;
        let Sub::Serve(args) = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?.command;
        Ok(args)
    }

    #[test]
    fn a_file_fills_what_flags_left_unset_and_flags_win() {
        let args =
            parse("secret = \"s\"\nshards = 3\nquiet = true\nnodes = [\"a:1\", \"b:2\"]\n", &[]).expect("parsed");
        assert_eq!((args.shards, args.quiet, args.nodes.clone()), (3, true, vec!["a:1".to_owned(), "b:2".to_owned()]));
        let args = parse("shards = 3\n", &["--shards", "9", "--secret", "s"]).expect("parsed");
        assert_eq!(args.shards, 9, "the flag wins");
        let args = parse("", &["--secret", "s"]).expect("parsed");
        assert_eq!((args.shards, args.name.as_str()), (7, "x"), "defaults are clap's");
        let err = parse("", &[]).unwrap_err();
        assert!(err.contains("--secret"), "a required flag missing from both: {err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_with_the_value() {
        let err = parse("shardz = 3\n", &[]).unwrap_err();
        assert!(err.contains("unknown key `shardz`") && err.contains("shards, name, quiet, nodes, secret"), "{err}");
        let err = parse("shards = 11\n", &[]).unwrap_err();
        assert!(err.contains("`shards` = 11:") && err.contains("11"), "{err}");
        let err = parse("quiet = \"yes\"\n", &[]).unwrap_err();
        assert!(err.contains("`quiet` = \"yes\""), "{err}");
        let err = parse("config = \"other.toml\"\n", &[]).unwrap_err();
        assert!(err.contains("unknown key `config`"), "{err}");
    }
}
