public import Testing

/// The subjects the suites are tagged with, so that a run can pick or group them by what they test.
extension Tag {
    /// The workflow engine: runs, steps, schedules, events.
    @Tag public static var engine: Self
    /// Agents, the model gateway and the tools they call.
    @Tag public static var agents: Self
    /// Identity and tenancy: accounts, credentials, roles, the audit log.
    @Tag public static var identity: Self
    /// What an attacker with an ordinary account tried.
    @Tag public static var security: Self
    /// The storage backends and what every one of them must do alike.
    @Tag public static var storage: Self
    /// Tests that start the `caravan` binary as a process of its own.
    @Tag public static var integration: Self
}
