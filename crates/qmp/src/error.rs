//! QMP errors of QEMU 1.1: a class, a human-readable description filled from a template, and
//! a data object (`{"class": ..., "desc": ..., "data": {...}}`).
//!
//! Every class of QEMU 1.1's `qerror.h` has a typed constructor here. The description is
//! produced from the class's template with `%(member)` replaced by the data member, as 1.1's
//! `qerror_human()` does, so `desc` and `data` can never disagree.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// A QMP error as sent in `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{class}: {desc}")]
pub struct QmpError {
    class: Cow<'static, str>,
    desc: String,
    data: Map<String, Value>,
}

/// Replaces every `%(name)` of `template` by the value of data member `name` (strings
/// unquoted, other values in JSON form); an unknown member is left as is.
fn fill(template: &str, data: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find("%(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) => {
                let key = &after[..end];
                match data.get(key) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(v) => out.push_str(&v.to_string()),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

impl QmpError {
    /// An error of any class with a description template (`%(member)` filled from `data`).
    /// Use the typed constructors for QEMU 1.1's classes.
    pub fn custom(
        class: impl Into<Cow<'static, str>>,
        template: &str,
        data: Map<String, Value>,
    ) -> QmpError {
        let desc = fill(template, &data);
        QmpError {
            class: class.into(),
            desc,
            data,
        }
    }

    /// The error class, e.g. `"CommandNotFound"`.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The human-readable description.
    pub fn desc(&self) -> &str {
        &self.desc
    }

    /// The data object.
    pub fn data(&self) -> &Map<String, Value> {
        &self.data
    }

    /// The error object `{"class": ..., "desc": ..., "data": {...}}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("class".into(), Value::String(self.class.to_string()));
        m.insert("desc".into(), Value::String(self.desc.clone()));
        m.insert("data".into(), Value::Object(self.data.clone()));
        Value::Object(m)
    }

    /// `PropertyValueOutOfRange`: "Property '%(device).%(property)' doesn't take value
    /// %(value) (minimum: %(min), maximum: %(max))".
    pub fn property_value_out_of_range(
        device: &str,
        property: &str,
        value: i64,
        min: i64,
        max: i64,
    ) -> QmpError {
        let mut d = Map::new();
        d.insert("device".into(), device.into());
        d.insert("property".into(), property.into());
        d.insert("value".into(), value.into());
        d.insert("min".into(), min.into());
        d.insert("max".into(), max.into());
        QmpError::custom(
            "PropertyValueOutOfRange",
            "Property '%(device).%(property)' doesn't take value %(value) (minimum: %(min), maximum: %(max))",
            d,
        )
    }

    /// `PropertyValueNotPowerOf2`: "Property '%(device).%(property)' doesn't take value
    /// '%(value)', it's not a power of 2".
    pub fn property_value_not_power_of_2(device: &str, property: &str, value: i64) -> QmpError {
        let mut d = Map::new();
        d.insert("device".into(), device.into());
        d.insert("property".into(), property.into());
        d.insert("value".into(), value.into());
        QmpError::custom(
            "PropertyValueNotPowerOf2",
            "Property '%(device).%(property)' doesn't take value '%(value)', it's not a power of 2",
            d,
        )
    }
}

macro_rules! qerrors {
    ($( $fn:ident => $class:literal ( $($arg:ident),* ) $desc:literal; )*) => {
        impl QmpError {
            $(
                #[doc = concat!("`", $class, "`: \"", $desc, "\".")]
                pub fn $fn($($arg: &str),*) -> QmpError {
                    #[allow(unused_mut)]
                    let mut d = Map::new();
                    $( d.insert(stringify!($arg).replace("r#", ""), Value::String($arg.to_owned())); )*
                    QmpError::custom($class, $desc, d)
                }
            )*
        }

        /// Every QEMU 1.1 error class with its description template, in `qerror.c` order.
        pub const CLASSES: &[(&str, &str)] = &[
            $( ($class, $desc), )*
            ("PropertyValueNotPowerOf2",
             "Property '%(device).%(property)' doesn't take value '%(value)', it's not a power of 2"),
            ("PropertyValueOutOfRange",
             "Property '%(device).%(property)' doesn't take value %(value) (minimum: %(min), maximum: %(max))"),
        ];
    };
}

qerrors! {
    add_client_failed => "AddClientFailed" () "Could not add client";
    ambiguous_path => "AmbiguousPath" (path, object) "Path '%(path)' does not uniquely identify a %(object)";
    bad_bus_for_device => "BadBusForDevice" (device, bad_bus_type) "Device '%(device)' can't go on a %(bad_bus_type) bus";
    base_not_found => "BaseNotFound" (base) "Base '%(base)' not found";
    block_format_feature_not_supported => "BlockFormatFeatureNotSupported" (format, name, feature) "Block format '%(format)' used by device '%(name)' does not support feature '%(feature)'";
    buffer_overrun => "BufferOverrun" () "An internal buffer overran";
    bus_no_hotplug => "BusNoHotplug" (bus) "Bus '%(bus)' does not support hotplugging";
    bus_not_found => "BusNotFound" (bus) "Bus '%(bus)' not found";
    command_disabled => "CommandDisabled" (name) "The command %(name) has been disabled for this instance";
    command_not_found => "CommandNotFound" (name) "The command %(name) has not been found";
    device_encrypted => "DeviceEncrypted" (device, filename) "Device '%(device)' is encrypted";
    device_feature_blocks_migration => "DeviceFeatureBlocksMigration" (device, feature) "Migration is disabled when using feature '%(feature)' in device '%(device)'";
    device_has_no_medium => "DeviceHasNoMedium" (device) "Device '%(device)' has no medium";
    device_init_failed => "DeviceInitFailed" (device) "Device '%(device)' could not be initialized";
    device_in_use => "DeviceInUse" (device) "Device '%(device)' is in use";
    device_is_read_only => "DeviceIsReadOnly" (device) "Device '%(device)' is read only";
    device_locked => "DeviceLocked" (device) "Device '%(device)' is locked";
    device_multiple_busses => "DeviceMultipleBusses" (device) "Device '%(device)' has multiple child busses";
    device_no_bus => "DeviceNoBus" (device) "Device '%(device)' has no child bus";
    device_no_hotplug => "DeviceNoHotplug" (device) "Device '%(device)' does not support hotplugging";
    device_not_active => "DeviceNotActive" (device) "Device '%(device)' has not been activated";
    device_not_encrypted => "DeviceNotEncrypted" (device) "Device '%(device)' is not encrypted";
    device_not_found => "DeviceNotFound" (device) "Device '%(device)' not found";
    device_not_removable => "DeviceNotRemovable" (device) "Device '%(device)' is not removable";
    duplicate_id => "DuplicateId" (id, object) "Duplicate ID '%(id)' for %(object)";
    fd_not_found => "FdNotFound" (name) "File descriptor named '%(name)' not found";
    fd_not_supplied => "FdNotSupplied" () "No file descriptor supplied via SCM_RIGHTS";
    feature_disabled => "FeatureDisabled" (name) "The feature '%(name)' is not enabled";
    invalid_block_format => "InvalidBlockFormat" (name) "Invalid block format '%(name)'";
    invalid_parameter => "InvalidParameter" (name) "Invalid parameter '%(name)'";
    invalid_parameter_combination => "InvalidParameterCombination" () "Invalid parameter combination";
    invalid_parameter_type => "InvalidParameterType" (name, expected) "Invalid parameter type for '%(name)', expected: %(expected)";
    invalid_parameter_value => "InvalidParameterValue" (name, expected) "Parameter '%(name)' expects %(expected)";
    invalid_password => "InvalidPassword" () "Password incorrect";
    io_error => "IOError" () "An IO error has occurred";
    json_parse_error => "JSONParseError" (message) "JSON parse error, %(message)";
    json_parsing => "JSONParsing" () "Invalid JSON syntax";
    kvm_missing_cap => "KVMMissingCap" (capability, feature) "Using KVM without %(capability), %(feature) unavailable";
    migration_active => "MigrationActive" () "There's a migration process in progress";
    migration_not_supported => "MigrationNotSupported" (device) "State blocked by non-migratable device '%(device)'";
    migration_expected => "MigrationExpected" () "An incoming migration is expected before this command can be executed";
    missing_parameter => "MissingParameter" (name) "Parameter '%(name)' is missing";
    no_bus_for_device => "NoBusForDevice" (device, bus) "No '%(bus)' bus found for device '%(device)'";
    not_supported => "NotSupported" () "Not supported";
    open_file_failed => "OpenFileFailed" (filename) "Could not open '%(filename)'";
    permission_denied => "PermissionDenied" () "Insufficient permission to perform this operation";
    property_not_found => "PropertyNotFound" (device, property) "Property '%(device).%(property)' not found";
    property_value_bad => "PropertyValueBad" (device, property, value) "Property '%(device).%(property)' doesn't take value '%(value)'";
    property_value_in_use => "PropertyValueInUse" (device, property, value) "Property '%(device).%(property)' can't take value '%(value)', it's in use";
    property_value_not_found => "PropertyValueNotFound" (device, property, value) "Property '%(device).%(property)' can't find value '%(value)'";
    qga_command_failed => "QgaCommandFailed" (message) "Guest agent command failed, error was '%(message)'";
    qga_logging_failed => "QgaLoggingFailed" () "Guest agent failed to log non-optional log statement";
    qmp_bad_input_object => "QMPBadInputObject" (expected) "Expected '%(expected)' in QMP input";
    qmp_bad_input_object_member => "QMPBadInputObjectMember" (member, expected) "QMP input object member '%(member)' expects '%(expected)'";
    qmp_extra_input_object_member => "QMPExtraInputObjectMember" (member) "QMP input object member '%(member)' is unexpected";
    reset_required => "ResetRequired" () "Resetting the Virtual Machine is required";
    set_passwd_failed => "SetPasswdFailed" () "Could not set password";
    too_many_files => "TooManyFiles" () "Too many open files";
    undefined_error => "UndefinedError" () "An undefined error has occurred";
    unknown_block_format_feature => "UnknownBlockFormatFeature" (device, format, feature) "'%(device)' uses a %(format) feature which is not supported by this qemu version: %(feature)";
    unsupported => "Unsupported" () "this feature or command is not currently supported";
    virtfs_feature_blocks_migration => "VirtFSFeatureBlocksMigration" (path, tag) "Migration is disabled when VirtFS export path '%(path)' is mounted in the guest using mount_tag '%(tag)'";
    vnc_server_failed => "VNCServerFailed" (target) "Could not start VNC server on %(target)";
    sock_connect_inprogress => "SockConnectInprogress" () "Connection can not be completed immediately";
    sock_connect_failed => "SockConnectFailed" () "Failed to connect to socket";
    sock_listen_failed => "SockListenFailed" () "Failed to set socket to listening mode";
    sock_bind_failed => "SockBindFailed" () "Failed to bind socket";
    sock_create_failed => "SockCreateFailed" () "Failed to create socket";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_from_data() {
        let e = QmpError::command_not_found("query-foo");
        assert_eq!(e.class(), "CommandNotFound");
        assert_eq!(e.desc(), "The command query-foo has not been found");
        assert_eq!(e.data().get("name"), Some(&Value::from("query-foo")));
        let e = QmpError::invalid_parameter_type("value", "int");
        assert_eq!(
            e.desc(),
            "Invalid parameter type for 'value', expected: int"
        );
        let e = QmpError::property_not_found("ide0", "drive");
        assert_eq!(e.desc(), "Property 'ide0.drive' not found");
        let e = QmpError::property_value_out_of_range("d", "p", -5, 0, 10);
        assert_eq!(
            e.desc(),
            "Property 'd.p' doesn't take value -5 (minimum: 0, maximum: 10)"
        );
        assert_eq!(e.data().get("min"), Some(&Value::from(0)));
    }

    #[test]
    fn error_object_member_order() {
        let e = QmpError::missing_parameter("value");
        let s = serde_json::to_string(&e.to_json()).unwrap();
        assert_eq!(
            s,
            r#"{"class":"MissingParameter","desc":"Parameter 'value' is missing","data":{"name":"value"}}"#
        );
    }

    #[test]
    fn every_class_template_refers_only_to_its_members() {
        // Every `%(x)` must be closed; a class listed twice would be a table mistake.
        let mut seen = std::collections::HashSet::new();
        for (class, desc) in CLASSES {
            assert!(seen.insert(*class), "duplicate class {class}");
            let opens = desc.matches("%(").count();
            let closes = desc.matches(')').count();
            assert!(closes >= opens, "{class}");
        }
        assert_eq!(CLASSES.len(), 70);
        assert_eq!(QmpError::io_error().desc(), "An IO error has occurred");
        assert_eq!(
            QmpError::undefined_error().desc(),
            "An undefined error has occurred"
        );
    }

    #[test]
    fn unknown_member_left_as_is() {
        let e = QmpError::custom("X", "a %(b) c %(", Map::new());
        assert_eq!(e.desc(), "a %(b) c %(");
    }
}
