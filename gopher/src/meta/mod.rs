//! `.meta` files: the table model and its loader.

mod model;
pub use model::{Field, FieldType, MetaRegistry, Table};
