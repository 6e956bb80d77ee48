//! The `.meta` loader: libconfig files -> checked [`Table`]s (docs/compat.md §2).
//!
//! All three legacy generations load. A measurement tells its generation by
//! how it names its table:
//! - V0: `name:` (and no `table_name:`); the entity is the table name, the
//!   types `Unknown` (a label) and `summary` (untyped) may appear, and the
//!   table may have no key field: such a table holds a single series, its
//!   newest record, as the V0 agent kept it;
//! - V1/V2: `table_name:` and `entity_name:`; V2 adds `histogram`. A V1/V2
//!   table needs at least one key field.
//!
//! Every problem is collected (not only the first) and names the file and line.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::model::{Field, FieldType, MetaRegistry, Table};
use crate::libconfig::{self, Setting, Value, ValueKind};

/// Most fields a table may have.
pub const MAX_FIELDS: usize = 128;

/// The table name reserved for the event channel (docs/compat.md §1).
pub const RESERVED_TABLE: &str = "event";

/// One problem found in a meta file or directory.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The directory could not be listed.
    #[error("{}: cannot read the meta directory: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The directory holds no `*.meta` file.
    #[error("{}: no .meta files in the meta directory", dir.display())]
    NoMetaFiles {
        /// The directory.
        dir: PathBuf,
    },
    /// A file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A libconfig syntax error.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// What was expected.
        message: String,
    },
    /// A required setting is absent.
    #[error("{}:{line}: {inside} has no `{key}`", file.display())]
    Missing {
        /// The file.
        file: PathBuf,
        /// Line of the enclosing group.
        line: usize,
        /// The missing setting.
        key: &'static str,
        /// What lacks it, e.g. "the measurement" or "field 3 of table `t`".
        inside: String,
    },
    /// A setting has a value of the wrong kind.
    #[error("{}:{line}: `{key}` must be {expected}, found {found}", file.display())]
    WrongType {
        /// The file.
        file: PathBuf,
        /// Line.
        line: usize,
        /// The setting.
        key: String,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
    /// A setting the meta format does not have.
    #[error("{}:{line}: unknown setting `{key}` in {inside} (expected {expected})", file.display())]
    UnknownSetting {
        /// The file.
        file: PathBuf,
        /// Line.
        line: usize,
        /// The setting.
        key: String,
        /// Where it appeared.
        inside: &'static str,
        /// The settings allowed there.
        expected: &'static str,
    },
    /// `measurements` is empty.
    #[error("{}:{line}: `measurements` is empty; expected at least one table", file.display())]
    NoMeasurements {
        /// The file.
        file: PathBuf,
        /// Line.
        line: usize,
    },
    /// A field type that is not known.
    #[error(
        "{}:{line}: field `{field}` of table `{table}` has unknown type `{ty}` \
         (expected key, label, gauge, counter, histogram, or V0 Unknown or summary)",
        file.display()
    )]
    UnknownFieldType {
        /// The file.
        file: PathBuf,
        /// Line of the field.
        line: usize,
        /// The table.
        table: String,
        /// The field.
        field: String,
        /// The type as written.
        ty: String,
    },
    /// A V1/V2 table without a key field (V0 tables may have none).
    #[error("{}:{line}: table `{table}` has no key field; expected at least one field of type key", file.display())]
    NoKey {
        /// The file.
        file: PathBuf,
        /// Line of the table.
        line: usize,
        /// The table.
        table: String,
    },
    /// A table with more than [`MAX_FIELDS`] fields.
    #[error("{}:{line}: table `{table}` has {count} fields; at most {MAX_FIELDS} are allowed", file.display())]
    TooManyFields {
        /// The file.
        file: PathBuf,
        /// Line of the table.
        line: usize,
        /// The table.
        table: String,
        /// How many fields it has.
        count: usize,
    },
    /// A table named `event`.
    #[error("{}:{line}: table name `{RESERVED_TABLE}` is reserved for the event channel", file.display())]
    ReservedTable {
        /// The file.
        file: PathBuf,
        /// Line of the table.
        line: usize,
    },
    /// A table declared twice.
    #[error(
        "{}:{line}: table `{table}` is already declared at {}:{first_line}",
        file.display(),
        first_file.display()
    )]
    DuplicateTable {
        /// The file of the second declaration.
        file: PathBuf,
        /// Its line.
        line: usize,
        /// The table.
        table: String,
        /// The file of the first declaration.
        first_file: PathBuf,
        /// Its line.
        first_line: usize,
    },
    /// A field declared twice in one table.
    #[error("{}:{line}: table `{table}` declares field `{field}` twice (first at line {first_line})", file.display())]
    DuplicateField {
        /// The file.
        file: PathBuf,
        /// Line of the second declaration.
        line: usize,
        /// The table.
        table: String,
        /// The field.
        field: String,
        /// Line of the first declaration.
        first_line: usize,
    },
    /// A field name reused by another table of the same entity, where that is
    /// not allowed (only key and label fields of the same type may repeat).
    #[error(
        "{}:{line}: field `{field}` ({ty}) of table `{table}` is already declared as a {other_ty} by table \
         `{other_table}` of entity `{entity}` at {}:{other_line}; within an entity only key and label \
         fields may repeat",
        file.display(),
        other_file.display()
    )]
    EntityFieldClash {
        /// The file.
        file: PathBuf,
        /// Line of the field.
        line: usize,
        /// The table.
        table: String,
        /// The entity.
        entity: String,
        /// The field.
        field: String,
        /// Its type here.
        ty: &'static str,
        /// The table that declared it first.
        other_table: String,
        /// Its file.
        other_file: PathBuf,
        /// Its line.
        other_line: usize,
        /// Its type there.
        other_ty: &'static str,
    },
    /// Tables of one entity with different key lists.
    #[error(
        "{}:{line}: table `{table}` of entity `{entity}` has keys [{keys}], but table `{other_table}` \
         ({}:{other_line}) of the same entity has keys [{other_keys}]; tables of one entity must have \
         identical keys",
        file.display(),
        other_file.display()
    )]
    KeyMismatch {
        /// The file.
        file: PathBuf,
        /// Line of the table.
        line: usize,
        /// The table.
        table: String,
        /// The entity.
        entity: String,
        /// Its keys, comma separated.
        keys: String,
        /// The first table of the entity.
        other_table: String,
        /// Its file.
        other_file: PathBuf,
        /// Its line.
        other_line: usize,
        /// Its keys.
        other_keys: String,
    },
}

impl MetaError {
    /// The file (or directory) the problem is in.
    pub fn file(&self) -> &Path {
        match self {
            Self::Dir { dir, .. } | Self::NoMetaFiles { dir } => dir,
            Self::Read { file, .. }
            | Self::Syntax { file, .. }
            | Self::Missing { file, .. }
            | Self::WrongType { file, .. }
            | Self::UnknownSetting { file, .. }
            | Self::NoMeasurements { file, .. }
            | Self::UnknownFieldType { file, .. }
            | Self::NoKey { file, .. }
            | Self::TooManyFields { file, .. }
            | Self::ReservedTable { file, .. }
            | Self::DuplicateTable { file, .. }
            | Self::DuplicateField { file, .. }
            | Self::EntityFieldClash { file, .. }
            | Self::KeyMismatch { file, .. } => file,
        }
    }

    /// The line of the problem, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Dir { .. } | Self::NoMetaFiles { .. } | Self::Read { .. } => None,
            Self::Syntax { line, .. }
            | Self::Missing { line, .. }
            | Self::WrongType { line, .. }
            | Self::UnknownSetting { line, .. }
            | Self::NoMeasurements { line, .. }
            | Self::UnknownFieldType { line, .. }
            | Self::NoKey { line, .. }
            | Self::TooManyFields { line, .. }
            | Self::ReservedTable { line, .. }
            | Self::DuplicateTable { line, .. }
            | Self::DuplicateField { line, .. }
            | Self::EntityFieldClash { line, .. }
            | Self::KeyMismatch { line, .. } => Some(*line),
        }
    }
}

/// Every problem found while loading a meta directory.
#[derive(Debug)]
pub struct MetaErrors(pub Vec<MetaError>);

impl fmt::Display for MetaErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MetaErrors {}

impl MetaRegistry {
    /// Loads every `*.meta` file of `dir` (sorted by name, not recursive),
    /// checks the rules within and across files, and builds the registry.
    pub fn load_dir(dir: &Path) -> Result<MetaRegistry, MetaErrors> {
        let entries = std::fs::read_dir(dir).map_err(|source| {
            MetaErrors(vec![MetaError::Dir {
                dir: dir.to_path_buf(),
                source,
            }])
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| {
                MetaErrors(vec![MetaError::Dir {
                    dir: dir.to_path_buf(),
                    source,
                }])
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "meta") && path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(MetaErrors(vec![MetaError::NoMetaFiles {
                dir: dir.to_path_buf(),
            }]));
        }
        files.sort();

        let mut tables = Vec::new();
        let mut errors = Vec::new();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(src) => {
                    let (t, e) = parse_file(&file, &src);
                    tables.extend(t);
                    errors.extend(e);
                }
                Err(source) => errors.push(MetaError::Read { file, source }),
            }
        }
        let tables = check_tables(tables, &mut errors);
        if errors.is_empty() {
            Ok(MetaRegistry::from_checked(tables))
        } else {
            Err(MetaErrors(errors))
        }
    }
}

/// Parses and checks one meta file (pure). Cross-table rules are checked
/// among the file's own tables.
pub fn parse_meta(path: &Path, src: &str) -> Result<Vec<Table>, Vec<MetaError>> {
    let (tables, mut errors) = parse_file(path, src);
    let tables = check_tables(tables, &mut errors);
    if errors.is_empty() {
        Ok(tables)
    } else {
        Err(errors)
    }
}

/// A table with the line of each of its fields.
struct Parsed {
    table: Table,
    field_lines: Vec<usize>,
}

/// Parses a file into its valid tables and the problems found; the rules
/// across tables are left to [`check_tables`].
fn parse_file(path: &Path, src: &str) -> (Vec<Parsed>, Vec<MetaError>) {
    let mut cx = Cx {
        file: path,
        errors: Vec::new(),
    };
    let settings = match libconfig::parse(src) {
        Ok(s) => s,
        Err(e) => {
            cx.errors.push(MetaError::Syntax {
                file: path.to_path_buf(),
                line: e.line,
                column: e.column,
                message: e.message,
            });
            return (Vec::new(), cx.errors);
        }
    };
    let tables = cx.document(&settings);
    let mut errors = cx.errors;
    errors.sort_by_key(|e| e.line().unwrap_or(0));
    (tables, errors)
}

struct Cx<'a> {
    file: &'a Path,
    errors: Vec<MetaError>,
}

const TOP_KEYS: &str = "`version` or `measurements`";
const TABLE_KEYS: &str = "`table_name`, `entity_name`, `name` or `fields`";
const FIELD_KEYS: &str = "`name`, `type` or `description`";

impl Cx<'_> {
    fn file(&self) -> PathBuf {
        self.file.to_path_buf()
    }

    fn wrong_type(&mut self, key: impl Into<String>, v: &Value, expected: &'static str) {
        self.errors.push(MetaError::WrongType {
            file: self.file(),
            line: v.line,
            key: key.into(),
            expected,
            found: v.kind.describe().to_string(),
        });
    }

    fn unknown(&mut self, s: &Setting, inside: &'static str, expected: &'static str) {
        self.errors.push(MetaError::UnknownSetting {
            file: self.file(),
            line: s.line,
            key: s.name.clone(),
            inside,
            expected,
        });
    }

    /// A string setting; reports it when it is not a string.
    fn string<'v>(&mut self, key: &str, v: &'v Value) -> Option<&'v str> {
        let s = v.as_str();
        if s.is_none() {
            self.wrong_type(key, v, "a string");
        }
        s
    }

    fn document(&mut self, settings: &[Setting]) -> Vec<Parsed> {
        let mut version = None;
        let mut measurements = None;
        for s in settings {
            match s.name.as_str() {
                "version" => version = self.string("version", &s.value).map(str::to_string),
                "measurements" => measurements = Some(s),
                _ => self.unknown(s, "the file", TOP_KEYS),
            }
        }
        let Some(m) = measurements else {
            self.errors.push(MetaError::Missing {
                file: self.file(),
                line: 1,
                key: "measurements",
                inside: "the file".into(),
            });
            return Vec::new();
        };
        let ValueKind::List(items) = &m.value.kind else {
            self.wrong_type(
                "measurements",
                &m.value,
                "a list `( { ... }, ... )` of tables",
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.errors.push(MetaError::NoMeasurements {
                file: self.file(),
                line: m.line,
            });
            return Vec::new();
        }
        let version = version.unwrap_or_else(|| "1.0.0".to_string());
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.measurement(i, item, &version))
            .collect()
    }

    fn measurement(&mut self, index: usize, item: &Value, version: &str) -> Option<Parsed> {
        let Some(settings) = item.as_group() else {
            self.wrong_type(format!("measurements[{index}]"), item, "a group `{ ... }`");
            return None;
        };
        let before = self.errors.len();
        let (mut table_name, mut v0_name, mut entity, mut fields_setting) =
            (None, None, None, None);
        let (mut name_written, mut table_name_written) = (false, false);
        for s in settings {
            match s.name.as_str() {
                "table_name" | "name" => {
                    name_written = true;
                    let v = self.string(&s.name, &s.value);
                    if s.name == "name" {
                        v0_name = v;
                    } else {
                        table_name_written = true;
                        table_name = v;
                    }
                }
                "entity_name" => entity = self.string("entity_name", &s.value),
                "fields" => fields_setting = Some(s),
                _ => self.unknown(s, "a measurement", TABLE_KEYS),
            }
        }
        let name = table_name.or(v0_name);
        // A V0 measurement names its table with `name:` only.
        let v0 = name_written && !table_name_written;
        match name {
            None if !name_written => self.errors.push(MetaError::Missing {
                file: self.file(),
                line: item.line,
                key: "table_name",
                inside: format!("measurement {} (V0 files may use `name`)", index + 1),
            }),
            Some("") => self.errors.push(MetaError::WrongType {
                file: self.file(),
                line: item.line,
                key: "table_name".into(),
                expected: "a non-empty string",
                found: "an empty string".into(),
            }),
            Some(RESERVED_TABLE) => self.errors.push(MetaError::ReservedTable {
                file: self.file(),
                line: item.line,
            }),
            _ => {}
        }
        // Fields are checked even when the table name is broken, so that every problem is reported.
        let shown = match name {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => format!("<measurement {}>", index + 1),
        };
        let Some(fs) = fields_setting else {
            self.errors.push(MetaError::Missing {
                file: self.file(),
                line: item.line,
                key: "fields",
                inside: format!("table `{shown}`"),
            });
            return None;
        };
        let Some(items) = fs.value.as_seq() else {
            self.wrong_type("fields", &fs.value, "a list `( { ... }, ... )` of fields");
            return None;
        };

        let mut fields: Vec<Field> = Vec::with_capacity(items.len());
        let mut lines: Vec<usize> = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            if let Some(f) = self.field(&shown, i, it) {
                if let Some(first) = fields.iter().position(|g| g.name == f.name) {
                    self.errors.push(MetaError::DuplicateField {
                        file: self.file(),
                        line: it.line,
                        table: shown.clone(),
                        field: f.name.clone(),
                        first_line: lines[first],
                    });
                }
                fields.push(f);
                lines.push(it.line);
            }
        }
        if self.errors.len() == before {
            // V0 tables may have no key: they hold one series (the newest record).
            if !v0 && !fields.iter().any(|f| f.ty == FieldType::Key) {
                self.errors.push(MetaError::NoKey {
                    file: self.file(),
                    line: item.line,
                    table: shown.clone(),
                });
            }
            if fields.len() > MAX_FIELDS {
                self.errors.push(MetaError::TooManyFields {
                    file: self.file(),
                    line: item.line,
                    table: shown.clone(),
                    count: fields.len(),
                });
            }
        }
        if self.errors.len() != before {
            return None;
        }
        let name = name?;
        let entity = match entity {
            Some("") | None => name,
            Some(e) => e,
        };
        let mut t = Table::new(name, entity, fields);
        t.version = version.to_string();
        t.source = self.file();
        t.line = item.line;
        Some(Parsed {
            table: t,
            field_lines: lines,
        })
    }

    fn field(&mut self, table: &str, index: usize, item: &Value) -> Option<Field> {
        let Some(settings) = item.as_group() else {
            self.wrong_type(
                format!("fields[{index}]"),
                item,
                "a group `{ name: .., type: .., description: .. }`",
            );
            return None;
        };
        let before = self.errors.len();
        let (mut name, mut ty, mut description) = (None, None, None);
        for s in settings {
            match s.name.as_str() {
                "name" => name = self.string("name", &s.value),
                "type" => ty = self.string("type", &s.value).map(|t| (t, s.line)),
                "description" => description = self.string("description", &s.value),
                _ => self.unknown(s, "a field", FIELD_KEYS),
            }
        }
        if self.errors.len() != before {
            return None;
        }
        let inside = |what: &str| format!("field {} of table `{table}`{what}", index + 1);
        let name = match name {
            Some("") => {
                self.errors.push(MetaError::WrongType {
                    file: self.file(),
                    line: item.line,
                    key: "name".into(),
                    expected: "a non-empty string",
                    found: "an empty string".into(),
                });
                return None;
            }
            Some(n) => n,
            None => {
                self.errors.push(MetaError::Missing {
                    file: self.file(),
                    line: item.line,
                    key: "name",
                    inside: inside(""),
                });
                return None;
            }
        };
        let Some((ty, ty_line)) = ty else {
            self.errors.push(MetaError::Missing {
                file: self.file(),
                line: item.line,
                key: "type",
                inside: inside(&format!(" (`{name}`)")),
            });
            return None;
        };
        let Some(ty) = field_type(ty) else {
            self.errors.push(MetaError::UnknownFieldType {
                file: self.file(),
                line: ty_line,
                table: table.to_string(),
                field: name.to_string(),
                ty: ty.to_string(),
            });
            return None;
        };
        Some(Field {
            name: name.to_string(),
            description: description.unwrap_or_default().to_string(),
            ty,
        })
    }
}

/// A field type as written in a meta file (case-insensitive).
fn field_type(s: &str) -> Option<FieldType> {
    let t = match s.to_ascii_lowercase().as_str() {
        "key" => FieldType::Key,
        "label" | "unknown" => FieldType::Label,
        "gauge" => FieldType::Gauge,
        "counter" => FieldType::Counter,
        "histogram" => FieldType::Histogram,
        "summary" | "untyped" => FieldType::Untyped,
        _ => return None,
    };
    Some(t)
}

fn key_names(t: &Table) -> Vec<&str> {
    t.keys
        .iter()
        .filter_map(|&i| t.fields.get(i))
        .map(|f| f.name.as_str())
        .collect()
}

/// (table index, field index) of a field.
type FieldAt = (usize, usize);

/// The rules across tables: unique table names, identical keys per entity,
/// field names unique within an entity. Returns the tables that pass.
fn check_tables(parsed: Vec<Parsed>, errors: &mut Vec<MetaError>) -> Vec<Table> {
    let (tables, field_lines): (Vec<Table>, Vec<Vec<usize>>) =
        parsed.into_iter().map(|p| (p.table, p.field_lines)).unzip();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    // entity -> (index of its first table, field name -> where it was first declared).
    let mut entities: HashMap<String, (usize, HashMap<String, FieldAt>)> = HashMap::new();
    let mut keep = vec![true; tables.len()];
    for (ti, t) in tables.iter().enumerate() {
        if let Some(&first) = by_name.get(&t.name) {
            let f = &tables[first];
            errors.push(MetaError::DuplicateTable {
                file: t.source.clone(),
                line: t.line,
                table: t.name.clone(),
                first_file: f.source.clone(),
                first_line: f.line,
            });
            keep[ti] = false;
            continue;
        }
        by_name.insert(t.name.clone(), ti);
        let Some((first, seen)) = entities.get_mut(&t.entity) else {
            let seen = t
                .fields
                .iter()
                .enumerate()
                .map(|(fi, f)| (f.name.clone(), (ti, fi)))
                .collect();
            entities.insert(t.entity.clone(), (ti, seen));
            continue;
        };
        let f = &tables[*first];
        if key_names(t) != key_names(f) {
            errors.push(MetaError::KeyMismatch {
                file: t.source.clone(),
                line: t.line,
                table: t.name.clone(),
                entity: t.entity.clone(),
                keys: key_names(t).join(", "),
                other_table: f.name.clone(),
                other_file: f.source.clone(),
                other_line: f.line,
                other_keys: key_names(f).join(", "),
            });
            keep[ti] = false;
            continue;
        }
        for (fi, field) in t.fields.iter().enumerate() {
            match seen.get(&field.name) {
                Some(&(oti, ofi)) => {
                    let (ot, of) = (&tables[oti], &tables[oti].fields[ofi]);
                    if !(field.ty.is_label() && field.ty == of.ty) {
                        errors.push(MetaError::EntityFieldClash {
                            file: t.source.clone(),
                            line: field_lines[ti].get(fi).copied().unwrap_or(t.line),
                            table: t.name.clone(),
                            entity: t.entity.clone(),
                            field: field.name.clone(),
                            ty: field.ty.as_str(),
                            other_table: ot.name.clone(),
                            other_file: ot.source.clone(),
                            other_line: field_lines[oti].get(ofi).copied().unwrap_or(ot.line),
                            other_ty: of.ty.as_str(),
                        });
                        keep[ti] = false;
                    }
                }
                None => {
                    seen.insert(field.name.clone(), (ti, fi));
                }
            }
        }
    }
    tables
        .into_iter()
        .zip(keep)
        .filter_map(|(t, k)| k.then_some(t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/meta_variants")
    }

    /// Parses a fixture as `name` (so messages carry a short path) and returns the errors.
    fn errors_of(name: &str) -> Vec<String> {
        let src = match std::fs::read_to_string(fixtures().join(name)) {
            Ok(s) => s,
            Err(e) => panic!("{name}: {e}"),
        };
        match parse_meta(Path::new(name), &src) {
            Ok(t) => panic!("{name} loaded: {t:?}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn load_errors(dir: &str) -> Vec<String> {
        let d = fixtures().join(dir);
        match MetaRegistry::load_dir(&d) {
            Ok(r) => panic!("{dir} loaded: {r:?}"),
            Err(e) => {
                let prefix = format!("{}/", fixtures().display());
                e.to_string()
                    .lines()
                    .map(|l| l.replace(&prefix, ""))
                    .collect()
            }
        }
    }

    fn field(name: &str, description: &str, ty: FieldType) -> Field {
        Field {
            name: name.into(),
            description: description.into(),
            ty,
        }
    }

    #[test]
    fn the_three_legacy_variants_load() {
        let dir = fixtures().join("good");
        let reg = match MetaRegistry::load_dir(&dir) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let names: Vec<_> = reg.tables().iter().map(|t| t.name.as_str()).collect();
        // Files in name order: v0, v1, v2.
        assert_eq!(
            names,
            ["system_meminfo", "tcp_tx_rx", "tcp_rtt", "proc_io_latency"]
        );

        let mut v0 = Table::new(
            "system_meminfo",
            "system_meminfo",
            vec![
                field("mem", "memory record key", FieldType::Key),
                field("host", "host name", FieldType::Label),
                field("MemTotal", "total usable RAM, kB", FieldType::Gauge),
                field("Quantiles", "a summary value", FieldType::Untyped),
            ],
        );
        v0.version = "1.0.0".into();
        v0.source = dir.join("v0_system_meminfo.meta");
        v0.line = 7;
        assert_eq!(reg.get("system_meminfo").map(|t| &**t), Some(&v0));

        let rtt = reg.get("tcp_rtt").map(|t| (**t).clone());
        let mut want = Table::new(
            "tcp_rtt",
            "tcp_link",
            vec![
                field("tgid", "process id", FieldType::Key),
                field("role", "role, 1 client 0 server", FieldType::Key),
                field("process_name", "process name", FieldType::Label),
                field("srtt", "smoothed round-trip time, us", FieldType::Gauge),
            ],
        );
        want.source = dir.join("v1_tcp_link.meta");
        want.line = 19;
        assert_eq!(rtt, Some(want));
        assert_eq!(
            reg.get("tcp_tx_rx").map(|t| t.keys.clone()),
            Some(vec![0, 1])
        );

        let mut v2 = Table::new(
            "proc_io_latency",
            "proc",
            vec![
                field("tgid", "process id", FieldType::Key),
                field("comm", "command name", FieldType::Label),
                field("bio_latency", "block io latency, us", FieldType::Histogram),
                field("io_count", "io operations", FieldType::Counter),
            ],
        );
        v2.version = "2.0.0".into();
        v2.source = dir.join("v2_proc_io.meta");
        v2.line = 6;
        assert_eq!(reg.get("proc_io_latency").map(|t| &**t), Some(&v2));
    }

    #[test]
    fn the_shipped_meta_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../meta");
        if let Err(e) = MetaRegistry::load_dir(&dir) {
            panic!("{e}");
        }
    }

    #[test]
    fn no_key() {
        assert_eq!(
            errors_of("broken/no_key.meta"),
            ["broken/no_key.meta:4: table `no_key` has no key field; expected at least one field of type key"]
        );
    }

    #[test]
    fn a_keyless_v0_table_loads() {
        let dir = fixtures().join("v0_keyless");
        let reg = match MetaRegistry::load_dir(&dir) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let t = reg.get("system_meminfo").map(|t| (**t).clone());
        let gauge = |n: &str, d: &str| field(n, d, FieldType::Gauge);
        let mut want = Table::new(
            "system_meminfo",
            "system_meminfo",
            vec![
                gauge("MemTotal", "total usable RAM, kB"),
                gauge("MemFree", "unused RAM, kB"),
                gauge("MemAvailable", "RAM available for new programs, kB"),
                gauge("Buffers", "block device buffers, kB"),
                gauge("Cached", "page cache, kB"),
                field(
                    "pswpin",
                    "swap pages read back in, since boot",
                    FieldType::Counter,
                ),
            ],
        );
        want.source = dir.join("system_meminfo.meta");
        want.line = 8;
        assert_eq!(t, Some(want));
        assert_eq!(reg.get("system_meminfo").map(|t| t.keys.len()), Some(0));

        // Only a table named the V0 way (`name:` alone) may go without a key.
        let keyless = |naming: &str| {
            format!(
                "measurements: (\n{{ {naming}, fields: ( {{ type: \"gauge\", name: \"v\" }} ) }} )"
            )
        };
        assert!(parse_meta(Path::new("v0.meta"), &keyless("name: \"t\"")).is_ok());
        let refused = |naming: &str| {
            parse_meta(Path::new("v1.meta"), &keyless(naming))
                .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        let no_key = Err(vec![
            "v1.meta:2: table `t` has no key field; expected at least one field of type key"
                .to_string(),
        ]);
        assert_eq!(refused("table_name: \"t\""), no_key);
        assert_eq!(refused("table_name: \"t\", entity_name: \"e\""), no_key);
        assert_eq!(refused("table_name: \"t\", name: \"t\""), no_key);
    }

    #[test]
    fn a_keyless_v0_table_keeps_its_newest_record_as_one_series() {
        use crate::export::prometheus::Exposition;
        use crate::identity::Identity;
        use crate::stats::Stats;
        use crate::store::TableStore;
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        let reg = match MetaRegistry::load_dir(&fixtures().join("v0_keyless")) {
            Ok(r) => Arc::new(r),
            Err(e) => panic!("{e}"),
        };
        let (Some(idx), Some(table)) = (reg.index_of("system_meminfo"), reg.get("system_meminfo"))
        else {
            panic!("no table system_meminfo");
        };
        let table = Arc::clone(table);
        let store = Arc::new(TableStore::new(&reg, Duration::from_secs(60), 16));
        let now = Instant::now();
        let mut key = String::new();
        let records = [
            ["16303980", "14279100", "15000000", "2000", "300000", "7"],
            ["16303980", "", "14900000", "2100", "310000", "9"],
        ];
        for (i, r) in records.iter().enumerate() {
            assert_eq!(crate::record::validate(&table, r), Ok(()), "record {i}");
            store.upsert(idx, r, now, 1000 + i as u64, &mut key);
        }
        // One series, with the values of the newest record (its empty
        // MemFree is null, so it has no sample).
        assert_eq!(store.lock(idx).map(|t| t.len()), Some(1), "one series");

        let id = Identity {
            machine_id: "m-1".into(),
            hostname: "h".into(),
        };
        let exp = Exposition::new(Arc::clone(&reg), store, Stats::new(), &id);
        let mut out = String::new();
        exp.render(now, &mut out);
        let series: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("gala_gopher_system_meminfo_"))
            .collect();
        let labels = r#"{machine_id="m-1",hostname="h"}"#;
        assert_eq!(
            series,
            [
                format!("gala_gopher_system_meminfo_MemTotal{labels} 16303980"),
                format!("gala_gopher_system_meminfo_MemAvailable{labels} 14900000"),
                format!("gala_gopher_system_meminfo_Buffers{labels} 2100"),
                format!("gala_gopher_system_meminfo_Cached{labels} 310000"),
                format!("gala_gopher_system_meminfo_pswpin{labels} 9"),
            ]
        );
        assert!(
            out.contains("# TYPE gala_gopher_system_meminfo_pswpin counter\n"),
            "{out}"
        );
    }

    #[test]
    fn unknown_type() {
        assert_eq!(
            errors_of("broken/unknown_type.meta"),
            ["broken/unknown_type.meta:9: field `v` of table `bad_type` has unknown type `float` \
              (expected key, label, gauge, counter, histogram, or V0 Unknown or summary)"]
        );
    }

    #[test]
    fn missing_name_and_type() {
        assert_eq!(
            errors_of("broken/missing.meta"),
            [
                "broken/missing.meta:9: field 2 of table `missing_parts` has no `name`",
                "broken/missing.meta:10: field 3 of table `missing_parts` (`v`) has no `type`",
                "broken/missing.meta:13: measurement 2 (V0 files may use `name`) has no `table_name`",
            ]
        );
    }

    #[test]
    fn reserved_event_table() {
        assert_eq!(
            errors_of("broken/reserved.meta"),
            ["broken/reserved.meta:4: table name `event` is reserved for the event channel"]
        );
    }

    #[test]
    fn duplicates_within_a_file() {
        assert_eq!(
            errors_of("broken/dup_in_file.meta"),
            [
                "broken/dup_in_file.meta:10: table `twice` declares field `v` twice (first at line 9)",
                "broken/dup_in_file.meta:17: table `once` is already declared at broken/dup_in_file.meta:13",
            ]
        );
    }

    #[test]
    fn entity_rules() {
        assert_eq!(
            errors_of("broken/entity_rules.meta"),
            [
                "broken/entity_rules.meta:21: field `reads` (gauge) of table `disk_lat` is already declared as a \
                 counter by table `disk_io` of entity `disk` at broken/entity_rules.meta:11; within an entity only \
                 key and label fields may repeat",
                "broken/entity_rules.meta:24: table `disk_part` of entity `disk` has keys [dev, part], but table \
                 `disk_io` (broken/entity_rules.meta:4) of the same entity has keys [dev]; tables of one entity \
                 must have identical keys",
            ]
        );
    }

    #[test]
    fn syntax_error() {
        assert_eq!(
            errors_of("broken/syntax.meta"),
            ["broken/syntax.meta:6:46: expected `,` or `)` in the list opened at line 6, found `{`"]
        );
    }

    #[test]
    fn unknown_settings() {
        assert_eq!(
            errors_of("broken/unknown_setting.meta"),
            [
                "broken/unknown_setting.meta:4: measurement 1 (V0 files may use `name`) has no `table_name`",
                "broken/unknown_setting.meta:5: unknown setting `tabel_name` in a measurement (expected \
                 `table_name`, `entity_name`, `name` or `fields`)",
                "broken/unknown_setting.meta:6: unknown setting `unit` in a field (expected `name`, `type` or \
                 `description`)",
                "broken/unknown_setting.meta:9: unknown setting `extra` in the file (expected `version` or \
                 `measurements`)",
            ]
        );
    }

    #[test]
    fn wrong_kinds() {
        let e = |src: &str| match parse_meta(Path::new("x.meta"), src) {
            Ok(t) => panic!("loaded: {t:?}"),
            Err(e) => e.iter().map(ToString::to_string).collect::<Vec<_>>(),
        };
        assert_eq!(e("version = 1\nmeasurements = 5"), [
            "x.meta:1: `version` must be a string, found an integer",
            "x.meta:2: `measurements` must be a list `( { ... }, ... )` of tables, found an integer",
        ]);
        assert_eq!(
            e("measurements = ()"),
            ["x.meta:1: `measurements` is empty; expected at least one table"]
        );
        assert_eq!(
            e("version = \"1\""),
            ["x.meta:1: the file has no `measurements`"]
        );
        assert_eq!(e("measurements = ( 5, { table_name = \"t\"; fields = ( \"k\" ) } )"), [
            "x.meta:1: `measurements[0]` must be a group `{ ... }`, found an integer",
            "x.meta:1: `fields[0]` must be a group `{ name: .., type: .., description: .. }`, found a string",
        ]);
        assert_eq!(
            e("measurements = ( { table_name = \"t\" } )"),
            ["x.meta:1: table `t` has no `fields`"]
        );
    }

    #[test]
    fn too_many_fields() {
        let fields: Vec<String> = (0..=MAX_FIELDS)
            .map(|i| {
                format!(
                    "{{ type: \"{}\", name: \"f{i}\" }}",
                    if i == 0 { "key" } else { "gauge" }
                )
            })
            .collect();
        let src = format!(
            "measurements: (\n{{ table_name: \"wide\", fields: ( {} ) }} )",
            fields.join(",\n")
        );
        assert_eq!(
            parse_meta(Path::new("wide.meta"), &src)
                .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>()),
            Err(vec![
                "wide.meta:2: table `wide` has 129 fields; at most 128 are allowed".to_string()
            ])
        );
        let ok = format!(
            "measurements: (\n{{ table_name: \"wide\", fields: ( {} ) }} )",
            fields[..MAX_FIELDS].join(",\n")
        );
        assert_eq!(
            parse_meta(Path::new("wide.meta"), &ok)
                .map(|t| t[0].fields.len())
                .ok(),
            Some(MAX_FIELDS)
        );
    }

    #[test]
    fn a_broken_directory_reports_every_problem() {
        // Every problem of every file (in file-name order, by line within a
        // file), then the rules across tables.
        assert_eq!(
            load_errors("broken"),
            [
                "broken/dup_in_file.meta:10: table `twice` declares field `v` twice (first at line 9)",
                "broken/missing.meta:9: field 2 of table `missing_parts` has no `name`",
                "broken/missing.meta:10: field 3 of table `missing_parts` (`v`) has no `type`",
                "broken/missing.meta:13: measurement 2 (V0 files may use `name`) has no `table_name`",
                "broken/no_key.meta:4: table `no_key` has no key field; expected at least one field of type key",
                "broken/reserved.meta:4: table name `event` is reserved for the event channel",
                "broken/syntax.meta:6:46: expected `,` or `)` in the list opened at line 6, found `{`",
                "broken/unknown_setting.meta:4: measurement 1 (V0 files may use `name`) has no `table_name`",
                "broken/unknown_setting.meta:5: unknown setting `tabel_name` in a measurement (expected \
                 `table_name`, `entity_name`, `name` or `fields`)",
                "broken/unknown_setting.meta:6: unknown setting `unit` in a field (expected `name`, `type` or \
                 `description`)",
                "broken/unknown_setting.meta:9: unknown setting `extra` in the file (expected `version` or \
                 `measurements`)",
                "broken/unknown_type.meta:9: field `v` of table `bad_type` has unknown type `float` (expected key, \
                 label, gauge, counter, histogram, or V0 Unknown or summary)",
                "broken/dup_in_file.meta:17: table `once` is already declared at broken/dup_in_file.meta:13",
                "broken/entity_rules.meta:21: field `reads` (gauge) of table `disk_lat` is already declared as a \
                 counter by table `disk_io` of entity `disk` at broken/entity_rules.meta:11; within an entity \
                 only key and label fields may repeat",
                "broken/entity_rules.meta:24: table `disk_part` of entity `disk` has keys [dev, part], but table \
                 `disk_io` (broken/entity_rules.meta:4) of the same entity has keys [dev]; tables of one entity \
                 must have identical keys",
            ]
        );
    }

    #[test]
    fn rules_are_checked_across_files() {
        assert_eq!(
            load_errors("cross_keys"),
            ["cross_keys/b_net.meta:4: table `net_tx` of entity `net` has keys [port, ip], but table `net_rx` \
              (cross_keys/a_net.meta:4) of the same entity has keys [ip]; tables of one entity must have identical keys"]
        );
        assert_eq!(
            load_errors("cross_dup"),
            ["cross_dup/b.meta:9: table `shared` is already declared at cross_dup/a.meta:4"]
        );
    }

    #[test]
    fn missing_or_empty_directory() {
        assert_eq!(
            load_errors("empty"),
            ["empty: no .meta files in the meta directory"]
        );
        let errors = load_errors("does_not_exist");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(
                "does_not_exist: cannot read the meta directory: No such file or directory"
            ),
            "{errors:?}"
        );
    }
}

#[cfg(test)]
mod prop {
    use super::*;

    proptest::proptest! {
        #[test]
        fn parse_meta_never_panics(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "version = \"1\"\n", "measurements: (", ")", "{", "}", ",", "table_name: \"t\",",
                    "name: \"event\",", "entity_name: \"e\",", "fields: (", "{ type: \"key\", name: \"k\" }",
                    "{ type: \"gauge\", name: \"k\" }", "{ type: \"Unknown\", name: \"l\" }", "type: 5,", "x = 1;",
                ]),
                0..40,
            )
        ) {
            let _ = parse_meta(Path::new("p.meta"), &parts.concat());
        }

        #[test]
        fn parse_meta_never_panics_on_text(s in "\\PC*") {
            let _ = parse_meta(Path::new("p.meta"), &s);
        }
    }
}
