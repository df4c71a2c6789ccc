//! Type oids the converter knows, their array types, and names for error messages.

pub const BOOL: u32 = 16;
pub const BYTEA: u32 = 17;
pub const NAME: u32 = 19;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const OID: u32 = 26;
pub const JSON: u32 = 114;
pub const FLOAT4: u32 = 700;
pub const FLOAT8: u32 = 701;
pub const BPCHAR: u32 = 1042;
pub const VARCHAR: u32 = 1043;
pub const DATE: u32 = 1082;
pub const TIME: u32 = 1083;
pub const TIMESTAMP: u32 = 1114;
pub const TIMESTAMPTZ: u32 = 1184;
pub const INTERVAL: u32 = 1186;
pub const NUMERIC: u32 = 1700;
pub const UUID: u32 = 2950;
pub const JSONB: u32 = 3802;

/// Scalar types `to_binary` converts.
pub const SCALARS: [u32; 21] = [
    BOOL,
    BYTEA,
    NAME,
    INT8,
    INT2,
    INT4,
    TEXT,
    OID,
    JSON,
    FLOAT4,
    FLOAT8,
    BPCHAR,
    VARCHAR,
    DATE,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    INTERVAL,
    NUMERIC,
    UUID,
    JSONB,
];

/// (array type oid, element type oid) for the supported scalars.
const ARRAYS: [(u32, u32); 21] = [
    (1000, BOOL),
    (1001, BYTEA),
    (1003, NAME),
    (1016, INT8),
    (1005, INT2),
    (1007, INT4),
    (1009, TEXT),
    (1028, OID),
    (199, JSON),
    (1021, FLOAT4),
    (1022, FLOAT8),
    (1014, BPCHAR),
    (1015, VARCHAR),
    (1182, DATE),
    (1183, TIME),
    (1115, TIMESTAMP),
    (1185, TIMESTAMPTZ),
    (1187, INTERVAL),
    (1231, NUMERIC),
    (2951, UUID),
    (3807, JSONB),
];

/// The element type of a supported array type.
pub fn array_element(array_oid: u32) -> Option<u32> {
    ARRAYS
        .iter()
        .find(|(a, _)| *a == array_oid)
        .map(|(_, e)| *e)
}

/// `pg_type.typname` of the built-in types (PostgreSQL 15), for messages.
const NAMES: &[(u32, &str)] = &[
    (16, "bool"),
    (17, "bytea"),
    (18, "char"),
    (19, "name"),
    (20, "int8"),
    (21, "int2"),
    (22, "int2vector"),
    (23, "int4"),
    (24, "regproc"),
    (25, "text"),
    (26, "oid"),
    (27, "tid"),
    (28, "xid"),
    (29, "cid"),
    (30, "oidvector"),
    (114, "json"),
    (142, "xml"),
    (143, "_xml"),
    (194, "pg_node_tree"),
    (199, "_json"),
    (600, "point"),
    (601, "lseg"),
    (602, "path"),
    (603, "box"),
    (604, "polygon"),
    (628, "line"),
    (629, "_line"),
    (650, "cidr"),
    (651, "_cidr"),
    (700, "float4"),
    (701, "float8"),
    (705, "unknown"),
    (718, "circle"),
    (719, "_circle"),
    (774, "macaddr8"),
    (775, "_macaddr8"),
    (790, "money"),
    (791, "_money"),
    (829, "macaddr"),
    (869, "inet"),
    (1000, "_bool"),
    (1001, "_bytea"),
    (1002, "_char"),
    (1003, "_name"),
    (1005, "_int2"),
    (1007, "_int4"),
    (1009, "_text"),
    (1014, "_bpchar"),
    (1015, "_varchar"),
    (1016, "_int8"),
    (1017, "_point"),
    (1018, "_lseg"),
    (1019, "_path"),
    (1020, "_box"),
    (1021, "_float4"),
    (1022, "_float8"),
    (1027, "_polygon"),
    (1028, "_oid"),
    (1033, "aclitem"),
    (1040, "_macaddr"),
    (1041, "_inet"),
    (1042, "bpchar"),
    (1043, "varchar"),
    (1082, "date"),
    (1083, "time"),
    (1114, "timestamp"),
    (1115, "_timestamp"),
    (1182, "_date"),
    (1183, "_time"),
    (1184, "timestamptz"),
    (1185, "_timestamptz"),
    (1186, "interval"),
    (1187, "_interval"),
    (1231, "_numeric"),
    (1266, "timetz"),
    (1270, "_timetz"),
    (1560, "bit"),
    (1561, "_bit"),
    (1562, "varbit"),
    (1563, "_varbit"),
    (1700, "numeric"),
    (1790, "refcursor"),
    (2205, "regclass"),
    (2206, "regtype"),
    (2249, "record"),
    (2275, "cstring"),
    (2278, "void"),
    (2950, "uuid"),
    (2951, "_uuid"),
    (3220, "pg_lsn"),
    (3614, "tsvector"),
    (3615, "tsquery"),
    (3802, "jsonb"),
    (3807, "_jsonb"),
    (3904, "int4range"),
    (3906, "numrange"),
    (3908, "tsrange"),
    (3910, "tstzrange"),
    (3912, "daterange"),
    (3926, "int8range"),
    (4072, "jsonpath"),
    (5069, "xid8"),
];

/// The built-in name of `oid`, if it is one the table knows.
pub fn known_name(oid: u32) -> Option<&'static str> {
    NAMES.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n)
}
