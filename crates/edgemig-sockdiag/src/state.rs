//! TCP socket states as the kernel numbers them (`TCP_ESTABLISHED` = 1 …),
//! and sets of them used to filter a dump.

use std::fmt;

/// State of a TCP socket (`sk_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// A state this crate does not know, by its kernel number.
    Unknown(u8),
}

impl TcpState {
    /// Every state a dump with [`StateSet::ALL`] can report.
    pub const KNOWN: [Self; 11] = [
        Self::Established,
        Self::SynSent,
        Self::SynRecv,
        Self::FinWait1,
        Self::FinWait2,
        Self::TimeWait,
        Self::Close,
        Self::CloseWait,
        Self::LastAck,
        Self::Listen,
        Self::Closing,
    ];

    /// The state with kernel number `raw`.
    pub const fn from_raw(raw: u8) -> Self {
        match raw {
            1 => Self::Established,
            2 => Self::SynSent,
            3 => Self::SynRecv,
            4 => Self::FinWait1,
            5 => Self::FinWait2,
            6 => Self::TimeWait,
            7 => Self::Close,
            8 => Self::CloseWait,
            9 => Self::LastAck,
            10 => Self::Listen,
            11 => Self::Closing,
            // TCP_NEW_SYN_RECV: a request socket, reported as SYN-RECV.
            12 => Self::SynRecv,
            other => Self::Unknown(other),
        }
    }

    /// The kernel number of the state.
    pub const fn raw(self) -> u8 {
        match self {
            Self::Established => 1,
            Self::SynSent => 2,
            Self::SynRecv => 3,
            Self::FinWait1 => 4,
            Self::FinWait2 => 5,
            Self::TimeWait => 6,
            Self::Close => 7,
            Self::CloseWait => 8,
            Self::LastAck => 9,
            Self::Listen => 10,
            Self::Closing => 11,
            Self::Unknown(raw) => raw,
        }
    }

    /// The name `ss` prints for the state.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTAB",
            Self::SynSent => "SYN-SENT",
            Self::SynRecv => "SYN-RECV",
            Self::FinWait1 => "FIN-WAIT-1",
            Self::FinWait2 => "FIN-WAIT-2",
            Self::TimeWait => "TIME-WAIT",
            Self::Close => "UNCONN",
            Self::CloseWait => "CLOSE-WAIT",
            Self::LastAck => "LAST-ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(raw) => write!(f, "UNKNOWN({raw})"),
            known => f.write_str(known.name()),
        }
    }
}

/// A set of [`TcpState`]s: the `idiag_states` bit mask of a dump request
/// (bit `n` selects state number `n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateSet(u32);

impl StateSet {
    /// No state at all (a dump with it reports nothing).
    pub const EMPTY: Self = Self(0);
    /// Every known state (what `ss -a` asks for).
    pub const ALL: Self = Self(0xffe);
    /// Established connections only (what plain `ss` shows, less the
    /// closing states).
    pub const ESTABLISHED: Self = Self::of(&[TcpState::Established]);
    /// Listening sockets only (`ss -l`).
    pub const LISTEN: Self = Self::of(&[TcpState::Listen]);
    /// Every state but `LISTEN` (what plain `ss` asks for, `SYN-RECV`
    /// and `TIME-WAIT` included).
    pub const CONNECTED: Self = Self(Self::ALL.0 & !Self::LISTEN.0);

    /// The set of `states`.
    pub const fn of(states: &[TcpState]) -> Self {
        let mut bits = 0u32;
        let mut i = 0;
        while i < states.len() {
            let raw = states[i].raw();
            if raw < 32 {
                bits |= 1 << raw;
            }
            i += 1;
        }
        Self(bits)
    }

    /// The raw bit mask.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The set with the raw bit mask `bits`.
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// Whether `state` is in the set. A `TCP_NEW_SYN_RECV` request socket
    /// counts as [`TcpState::SynRecv`].
    pub const fn contains(self, state: TcpState) -> bool {
        let raw = state.raw();
        raw < 32 && self.0 & (1 << raw) != 0
    }

    /// The union of both sets.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl Default for StateSet {
    /// [`StateSet::ALL`].
    fn default() -> Self {
        Self::ALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_sets() {
        for s in TcpState::KNOWN {
            assert_eq!(TcpState::from_raw(s.raw()), s);
            assert!(StateSet::ALL.contains(s));
        }
        assert_eq!(TcpState::from_raw(12), TcpState::SynRecv);
        assert_eq!(TcpState::from_raw(13), TcpState::Unknown(13));
        assert_eq!(StateSet::ESTABLISHED.bits(), 1 << 1);
        assert!(!StateSet::CONNECTED.contains(TcpState::Listen));
        assert!(StateSet::CONNECTED.contains(TcpState::TimeWait));
        let both = StateSet::ESTABLISHED.with(StateSet::LISTEN);
        assert!(both.contains(TcpState::Listen) && both.contains(TcpState::Established));
        assert!(!both.contains(TcpState::SynSent));
        assert_eq!(TcpState::Established.to_string(), "ESTAB");
    }
}
