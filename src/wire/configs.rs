//! Configs as plain Rust: set one of a group's (IncrementalAlterConfigs on
//! a GROUP resource, KIP-848 and KIP-932) or read one of a group's or a
//! broker's (DescribeConfigs). A share worker sets `share.auto.offset.reset`
//! from `--from` and reads the record lock limit to size its ShareFetches.

use kafka_protocol::messages as m;
use kafka_protocol::protocol::StrBytes;

use super::{BrokerConn, WireResult};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// The resource type of a group's configs (KIP-848, KIP-932).
const GROUP_RESOURCE: i8 = 32;
/// The resource type of a broker's configs.
const BROKER_RESOURCE: i8 = 4;

/// Whose config to read.
#[derive(Debug, Clone, Copy)]
pub enum ConfigOwner<'a> {
    /// A group: its own value, else the broker's default for groups.
    Group(&'a str),
    /// One broker, by node id.
    Broker(i32),
}

impl ConfigOwner<'_> {
    fn resource(self) -> (i8, String) {
        match self {
            ConfigOwner::Group(g) => (GROUP_RESOURCE, g.to_string()),
            ConfigOwner::Broker(node) => (BROKER_RESOURCE, node.to_string()),
        }
    }
}

/// Set one config of a group (IncrementalAlterConfigs, resource type
/// GROUP): e.g. `share.auto.offset.reset`. Ok(Err(code, message)) when the
/// broker refuses it.
pub async fn set_group_config(
    conn: &mut BrokerConn,
    group: &str,
    key: &str,
    value: &str,
) -> WireResult<Result<(), (i16, String)>> {
    const SET: i8 = 0;
    let v = conn.negotiate::<m::IncrementalAlterConfigsRequest>(0, 1)?;
    let req = m::IncrementalAlterConfigsRequest::default().with_resources(vec![
        m::incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(GROUP_RESOURCE)
            .with_resource_name(s(group))
            .with_configs(vec![
                m::incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s(key))
                    .with_config_operation(SET)
                    .with_value(Some(s(value))),
            ]),
    ]);
    let r = conn.send(req, v).await?;
    Ok(match r.responses.into_iter().find(|x| x.error_code != 0) {
        None => Ok(()),
        Some(x) => Err((
            x.error_code,
            x.error_message.map(|m| m.to_string()).unwrap_or_default(),
        )),
    })
}

/// Read one config (DescribeConfigs), e.g. a group's
/// `share.partition.max.record.locks`. Ok(Ok(None)): the broker names no
/// such config; Ok(Err(code, message)) when it refuses.
pub async fn read_config(
    conn: &mut BrokerConn,
    owner: ConfigOwner<'_>,
    key: &str,
) -> WireResult<Result<Option<String>, (i16, String)>> {
    let v = conn.negotiate::<m::DescribeConfigsRequest>(1, 4)?;
    let (resource_type, name) = owner.resource();
    let req = m::DescribeConfigsRequest::default().with_resources(vec![
        m::describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(&name))
            .with_configuration_keys(Some(vec![s(key)])),
    ]);
    Ok(config_value(conn.send(req, v).await?, key))
}

fn config_value(r: m::DescribeConfigsResponse, key: &str) -> Result<Option<String>, (i16, String)> {
    let Some(res) = r.results.into_iter().next() else {
        return Ok(None);
    };
    if res.error_code != 0 {
        let msg = res.error_message.map(|m| m.to_string()).unwrap_or_default();
        return Err((res.error_code, msg));
    }
    Ok(res
        .configs
        .into_iter()
        .find(|c| c.name.as_str() == key)
        .and_then(|c| c.value.map(|v| v.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_is_read_from_its_answer() {
        let answer = |code: i16, configs: Vec<(&str, Option<&str>)>| {
            let configs = configs
                .into_iter()
                .map(|(k, v)| {
                    m::describe_configs_response::DescribeConfigsResourceResult::default()
                        .with_name(s(k))
                        .with_value(v.map(s))
                })
                .collect();
            let result = m::describe_configs_response::DescribeConfigsResult::default()
                .with_error_code(code)
                .with_error_message((code != 0).then(|| s("not allowed")))
                .with_resource_type(GROUP_RESOURCE)
                .with_resource_name(s("g"))
                .with_configs(configs);
            m::DescribeConfigsResponse::default().with_results(vec![result])
        };
        let key = "share.partition.max.record.locks";
        let both = vec![
            ("share.record.lock.duration.ms", Some("30000")),
            (key, Some("400")),
        ];
        assert_eq!(config_value(answer(0, both), key), Ok(Some("400".into())));
        assert_eq!(config_value(answer(0, vec![]), key), Ok(None));
        assert_eq!(
            config_value(answer(29, vec![]), key),
            Err((29, "not allowed".into()))
        );
        let none = m::DescribeConfigsResponse::default();
        assert_eq!(config_value(none, key), Ok(None));
    }
}
