//! `.meta` files: the table model and its loader.

mod model;
pub use model::{Field, FieldType, MetaRegistry, Table};

mod load;
pub use load::{parse_meta, MetaError, MetaErrors, MAX_FIELDS, RESERVED_TABLE};
