//! The table model that `.meta` files declare.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The type of one field of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Part of the series identity; the first key must be non-empty.
    Key,
    /// A descriptive label (also the V0 `Unknown` type).
    Label,
    /// A value that goes up and down.
    Gauge,
    /// A cumulative value.
    Counter,
    /// `N b1 c1 ... bN cN sum max` (V2).
    Histogram,
    /// A numeric value of no declared kind (the V0 `summary` type).
    Untyped,
}

impl FieldType {
    /// Whether the field is exported as a metric (not a key or label).
    pub fn is_metric(self) -> bool {
        matches!(
            self,
            Self::Gauge | Self::Counter | Self::Histogram | Self::Untyped
        )
    }

    /// Whether the field identifies or describes the series.
    pub fn is_label(self) -> bool {
        matches!(self, Self::Key | Self::Label)
    }

    /// Name as written in meta files and in the metadata JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Label => "label",
            Self::Gauge => "gauge",
            Self::Counter => "counter",
            Self::Histogram => "histogram",
            Self::Untyped => "untyped",
        }
    }
}

/// One field of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field name, unique within the entity.
    pub name: String,
    /// Free text from the meta file, used for Prometheus HELP.
    pub description: String,
    /// Field type.
    pub ty: FieldType,
}

/// One table (a "measurement") declared in a `.meta` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// `table_name` (or V0 `name`).
    pub name: String,
    /// `entity_name`; V0 files without it use the table name.
    pub entity: String,
    /// The file's `version`.
    pub version: String,
    /// Fields in the order probes print them.
    pub fields: Vec<Field>,
    /// The `.meta` file that declared it.
    pub source: PathBuf,
    /// Line of the measurement in `source` (1-based).
    pub line: usize,
    /// Positions of the key fields in `fields`, in order. Empty for a keyless
    /// V0 table, which holds a single series (its newest record).
    pub keys: Vec<usize>,
}

impl Table {
    /// Builds a table and computes its key positions.
    pub fn new(name: impl Into<String>, entity: impl Into<String>, fields: Vec<Field>) -> Self {
        let keys = fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.ty == FieldType::Key)
            .map(|(i, _)| i)
            .collect();
        Self {
            name: name.into(),
            entity: entity.into(),
            version: "1.0.0".into(),
            fields,
            source: PathBuf::new(),
            line: 0,
            keys,
        }
    }

    /// Index of a field by name.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// Every table known to the daemon, by name and by dense index.
#[derive(Debug, Clone, Default)]
pub struct MetaRegistry {
    tables: Vec<Arc<Table>>,
    by_name: HashMap<String, usize>,
}

impl MetaRegistry {
    /// Builds a registry from tables already checked by the loader.
    /// Later duplicates of a name are ignored (the loader reports them).
    pub fn from_checked(tables: Vec<Table>) -> Self {
        let mut reg = Self::default();
        for t in tables {
            if reg.by_name.contains_key(&t.name) {
                continue;
            }
            reg.by_name.insert(t.name.clone(), reg.tables.len());
            reg.tables.push(Arc::new(t));
        }
        reg
    }

    /// Looks a table up by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Table>> {
        self.by_name.get(name).map(|&i| &self.tables[i])
    }

    /// Dense index of a table, stable for the life of the registry.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Table at a dense index.
    pub fn by_index(&self, i: usize) -> Option<&Arc<Table>> {
        self.tables.get(i)
    }

    /// All tables in load order.
    pub fn tables(&self) -> &[Arc<Table>] {
        &self.tables
    }

    /// Number of tables.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether no table is known.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}
