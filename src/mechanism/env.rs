//! An instance's environment ([`Env`]) and the values of its variables
//! ([`EnvValue`]).
//!
//! A port's `IPC_PORT_*` value follows entirely from the plan: its
//! channel's id and mechanism, the end its side holds, the receivers (the
//! `to` side's instances) and the port's fd. The planner keeps it as a
//! reference to that channel end ([`PortRef`]: eight bytes, no allocation)
//! instead of its text, which would be one allocation per port of every
//! instance; it is rendered where it is read, against the plan's channels
//! ([`Env::vars`]), by the one function that writes it ([`port_value`]).
//! A plan read back from JSON holds every value as text.

use std::borrow::Cow;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PortSide;
use super::model::{ChannelPlan, End, EndpointPlan};
use ipc_run_child as child;

/// One environment variable; `value` may contain placeholders.
// Names and values that many instances have alike (`IPC_RUN_ID`, the
// topology's name, a port's variable name, a process's own `env`) are made
// once and shared, not allocated for every instance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name.
    pub name: Arc<str>,
    /// Value template.
    pub value: EnvValue,
}

/// The value of an [`EnvVar`]: text, or a port's description kept as a
/// reference to its channel end. It has no `Display`: a reader renders it
/// with the plan's channels ([`EnvValue::text`], [`Env::vars`]). Written
/// and described in the schema as the string it renders to.
// 16 bytes, as the `Arc<str>` it replaces: the reference lies beside the
// text pointer's niche (a unit test checks the size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// The value as written, placeholders included.
    Text(Arc<str>),
    /// A port's `IPC_PORT_*` value, made from the plan's channels.
    Port(PortRef),
}

/// A port's channel end: the channel's index in the plan's `channels`, its
/// side and the port's fd, packed into eight bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRef {
    /// The channel's index, with [`TO_SIDE`] set for a port on the `to` side.
    channel_side: u32,
    /// The fd, or -1 when the port gets none.
    fd: i32,
}

/// The bit of [`PortRef::channel_side`] that marks the `to` side.
const TO_SIDE: u32 = 1 << 31;

impl PortRef {
    /// The end of the port on channel `channel` (its index in the plan),
    /// on the `to` side when `is_reader`, handed `fd`; `None` when the
    /// index or fd does not fit the packing (the value is then kept as
    /// text).
    pub fn new(channel: usize, is_reader: bool, fd: Option<i32>) -> Option<PortRef> {
        let channel = u32::try_from(channel).ok().filter(|c| c & TO_SIDE == 0)?;
        let fd = match fd {
            Some(fd) if fd >= 0 => fd,
            Some(_) => return None,
            None => -1,
        };
        let side = if is_reader { TO_SIDE } else { 0 };
        Some(PortRef {
            channel_side: channel | side,
            fd,
        })
    }

    /// The channel's index in the plan.
    pub fn channel(self) -> usize {
        (self.channel_side & !TO_SIDE) as usize
    }

    /// Whether the port is on the channel's `to` side.
    pub fn is_reader(self) -> bool {
        self.channel_side & TO_SIDE != 0
    }

    /// The port's fd, when it gets one.
    pub fn fd(self) -> Option<i32> {
        (self.fd >= 0).then_some(self.fd)
    }

    /// The value, rendered against `channels`; `None` when they have no
    /// such channel or no port on that side.
    pub fn render(self, channels: &[ChannelPlan]) -> Option<String> {
        let channel = channels.get(self.channel())?;
        // Every port of a side holds the same end.
        let end = side(channel, self.is_reader())
            .iter()
            .find_map(|e| match e {
                EndpointPlan::Port { end, .. } => Some(*end),
                _ => None,
            })?;
        Some(port_value(channel, end, self.fd()))
    }
}

/// One side of a channel: `from`, or `to` when `is_reader`.
fn side(channel: &ChannelPlan, is_reader: bool) -> &[EndpointPlan] {
    if is_reader {
        channel.to()
    } else {
        channel.from()
    }
}

/// The `IPC_PORT_*` value of a port of `channel` holding `end`, handed
/// `fd`: `kind=… channel=… end=… PARAMS… [fd=N]`, as
/// [`child::Description`] writes it, with the mechanism's parameters
/// ([`super::describe`]). The one place the text is made.
pub fn port_value(channel: &ChannelPlan, end: End, fd: Option<i32>) -> String {
    let port = PortSide {
        id: &channel.id,
        end,
        receivers: side(channel, true),
    };
    let description = child::Description {
        channel: channel.id.to_string(),
        end: child_end(end),
        params: super::describe(&channel.mechanism, &port),
        fd,
    };
    description.to_string()
}

/// The plan's end as the port description spells it.
fn child_end(end: End) -> child::End {
    match end {
        End::Write => child::End::Write,
        End::Read => child::End::Read,
        End::Both => child::End::Both,
        End::Listen => child::End::Listen,
        End::Connect => child::End::Connect,
        End::Send => child::End::Send,
        End::Receive => child::End::Receive,
    }
}

/// A port variable whose reference names no port of the plan's channels:
/// an instance moved to another plan without its values rendered first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` refers to the {side} side of channel #{channel}, which the plan has no port on")]
pub struct PortRefError {
    /// The variable.
    pub name: Arc<str>,
    /// The channel's index.
    pub channel: usize,
    /// `from` or `to`.
    pub side: &'static str,
}

impl EnvValue {
    /// The value as text: a port's rendered against `channels`, the
    /// plan's the variable is in.
    pub fn text<'a>(
        &'a self,
        name: &Arc<str>,
        channels: &[ChannelPlan],
    ) -> Result<Cow<'a, str>, PortRefError> {
        match self {
            EnvValue::Text(text) => Ok(Cow::Borrowed(text)),
            EnvValue::Port(port) => {
                port.render(channels)
                    .map(Cow::Owned)
                    .ok_or_else(|| PortRefError {
                        name: Arc::clone(name),
                        channel: port.channel(),
                        side: if port.is_reader() { "to" } else { "from" },
                    })
            }
        }
    }

    /// The text, when the value is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            EnvValue::Text(text) => Some(text),
            EnvValue::Port(_) => None,
        }
    }
}

impl From<Arc<str>> for EnvValue {
    fn from(text: Arc<str>) -> EnvValue {
        EnvValue::Text(text)
    }
}

impl From<&str> for EnvValue {
    fn from(text: &str) -> EnvValue {
        EnvValue::Text(text.into())
    }
}

impl From<String> for EnvValue {
    fn from(text: String) -> EnvValue {
        EnvValue::Text(text.into())
    }
}

// Alone, a reference cannot be written: the plan's writer renders it
// (`Env::in_plan`). A clear error, never a lost variable.
impl Serialize for EnvValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            EnvValue::Text(text) => serializer.serialize_str(text),
            EnvValue::Port(port) => Err(serde::ser::Error::custom(format_args!(
                "a port variable of channel #{} is written with its plan's channels",
                port.channel()
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <Arc<str>>::deserialize(deserializer).map(EnvValue::Text)
    }
}

// Described as the string it is written as.
schema_as!(EnvValue => Arc<str>);

/// A variable with its value as text ([`Env::vars`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedVar<'a> {
    /// Variable name.
    pub name: &'a Arc<str>,
    /// The value, placeholders included.
    pub value: Cow<'a, str>,
}

/// An instance's environment ([`super::model::ProcessPlan::env`]), in
/// order: first the variables every instance of the plan has alike
/// (`IPC_RUN_ID`, `IPC_RUN_DIR`, `IPC_RUN_TOPOLOGY`), one list shared by
/// all of them, then the instance's own. It reads, serialises and is
/// described in the schema as the one list it is: the split only saves a
/// large plan three variables per instance. Its port values may be
/// references ([`EnvValue::Port`]): read their text with [`Env::vars`].
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// The plan's variables, shared by every instance; `None` in a plan
    /// read back from JSON, whose instances hold every variable as their own.
    shared: Option<Arc<[EnvVar]>>,
    /// The instance's own variables, after the shared ones.
    own: Box<[EnvVar]>,
}

/// The variables of an [`Env`], in order.
pub type EnvIter<'a> = std::iter::Chain<std::slice::Iter<'a, EnvVar>, std::slice::Iter<'a, EnvVar>>;

impl Env {
    /// `shared` (made once per plan) followed by `own`.
    pub fn new(shared: Arc<[EnvVar]>, own: Vec<EnvVar>) -> Env {
        Env {
            shared: Some(shared),
            own: own.into_boxed_slice(),
        }
    }

    /// Every variable, in order, as held: port values may be references
    /// (for their text, [`Env::vars`]).
    pub fn iter(&self) -> EnvIter<'_> {
        self.shared
            .as_deref()
            .unwrap_or_default()
            .iter()
            .chain(self.own.iter())
    }

    /// Every variable, in order, with its value as text: port values
    /// rendered against `channels`, the channels of the plan the instance
    /// is in.
    pub fn vars<'a>(
        &'a self,
        channels: &'a [ChannelPlan],
    ) -> impl Iterator<Item = Result<RenderedVar<'a>, PortRefError>> + 'a {
        self.iter().map(move |var| {
            Ok(RenderedVar {
                name: &var.name,
                value: var.value.text(&var.name, channels)?,
            })
        })
    }

    /// Turns every port reference into its text, rendered against
    /// `channels`: before the instance moves to a plan with other
    /// channels (a host group's, a reload's).
    pub fn render_ports(&mut self, channels: &[ChannelPlan]) -> Result<(), PortRefError> {
        if !self.iter().any(|v| matches!(v.value, EnvValue::Port(_))) {
            return Ok(());
        }
        for var in self.as_mut_slice() {
            if let EnvValue::Port(_) = var.value {
                let text = var.value.text(&var.name, channels)?.into_owned();
                var.value = EnvValue::Text(text.into());
            }
        }
        Ok(())
    }

    /// Whether two environments read as the same list, each rendered
    /// against its own plan's channels.
    pub fn same_as(
        &self,
        channels: &[ChannelPlan],
        other: &Env,
        other_channels: &[ChannelPlan],
    ) -> bool {
        self.len() == other.len() && self.vars(channels).eq(other.vars(other_channels))
    }

    /// The environment as its plan writes it, port values rendered
    /// against `channels`.
    pub fn in_plan<'a>(&'a self, channels: &'a [ChannelPlan]) -> EnvInPlan<'a> {
        EnvInPlan {
            env: self,
            channels,
        }
    }

    /// The number of variables.
    pub fn len(&self) -> usize {
        self.shared.as_deref().map_or(0, <[EnvVar]>::len) + self.own.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a variable at the end (rare: a watchdog's, a bus address).
    pub fn push(&mut self, var: EnvVar) {
        let mut own = std::mem::take(&mut self.own).into_vec();
        own.push(var);
        self.own = own.into_boxed_slice();
    }

    /// Every variable, to change in place: the instance takes its own copy
    /// of the shared ones first.
    pub fn as_mut_slice(&mut self) -> &mut [EnvVar] {
        if let Some(shared) = self.shared.take() {
            let mut all = shared.to_vec();
            all.extend(std::mem::take(&mut self.own).into_vec());
            self.own = all.into_boxed_slice();
        }
        &mut self.own
    }
}

impl From<Vec<EnvVar>> for Env {
    fn from(vars: Vec<EnvVar>) -> Env {
        Env {
            shared: None,
            own: vars.into_boxed_slice(),
        }
    }
}

impl<'a> IntoIterator for &'a Env {
    type Item = &'a EnvVar;
    type IntoIter = EnvIter<'a>;
    fn into_iter(self) -> EnvIter<'a> {
        self.iter()
    }
}

// Equal by the list it holds, wherever the split is. A port reference
// equals only the same reference: instances of two plans compare with
// `Env::same_as`, which renders them.
impl PartialEq for Env {
    fn eq(&self, other: &Env) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Env {}

impl Serialize for Env {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Env {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<EnvVar>::deserialize(deserializer).map(Env::from)
    }
}

// Described as the list it is written as.
schema_as!(Env => Vec<EnvVar>);

/// An [`Env`] with its plan's channels, written as the list of
/// `{name, value}` it reads as ([`Env::in_plan`]).
pub struct EnvInPlan<'a> {
    env: &'a Env,
    channels: &'a [ChannelPlan],
}

impl Serialize for EnvInPlan<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = serializer.serialize_seq(Some(self.env.len()))?;
        for var in self.env.vars(self.channels) {
            seq.serialize_element(&var.map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_as_small_as_the_text_it_replaces() {
        assert_eq!(std::mem::size_of::<EnvValue>(), 16);
        assert_eq!(std::mem::size_of::<EnvVar>(), 32);
    }

    #[test]
    fn a_reference_keeps_its_channel_side_and_fd() {
        let port = PortRef::new(12, true, Some(4)).expect("fits");
        assert_eq!(
            (port.channel(), port.is_reader(), port.fd()),
            (12, true, Some(4))
        );
        let port = PortRef::new(0, false, None).expect("fits");
        assert_eq!(
            (port.channel(), port.is_reader(), port.fd()),
            (0, false, None)
        );
        assert_eq!(PortRef::new(1 << 31, false, None), None);
        assert_eq!(PortRef::new(0, false, Some(-1)), None);
    }

    #[test]
    fn a_reference_to_no_channel_is_an_error_not_a_lost_variable() {
        let env = Env::from(vec![EnvVar {
            name: "IPC_PORT_IN".into(),
            value: EnvValue::Port(PortRef::new(3, true, Some(3)).expect("fits")),
        }]);
        let read: Vec<_> = env.vars(&[]).collect();
        assert_eq!(read.len(), 1);
        let error = read[0].clone().expect_err("no channel 3");
        assert_eq!(
            error.to_string(),
            "`IPC_PORT_IN` refers to the to side of channel #3, which the plan has no port on"
        );
        assert!(serde_json::to_string(&env).is_err());
        assert!(serde_json::to_string(&env.in_plan(&[])).is_err());
    }
}
