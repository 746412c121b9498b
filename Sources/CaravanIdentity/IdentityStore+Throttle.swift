import CaravanStorage

/// The counters of `AuthThrottle`: attempts per source and window, failed sign-ins per account and source.
extension IdentityStore {
    /// Counts an attempt in `bucket`'s window starting at `window` (a new window starts the count again).
    /// - Returns: the attempts counted in that window, this one included.
    func countAttempt(bucket: String, window: Int64, in executor: any SQLExecutor) async throws -> Int64 {
        try await executor.queryFirst(
            """
            INSERT INTO rate_windows (bucket, window_start, count) VALUES ($1, $2, 1)
            ON CONFLICT (bucket) DO UPDATE SET
                count = CASE WHEN rate_windows.window_start = excluded.window_start THEN rate_windows.count + 1 ELSE 1 END,
                window_start = excluded.window_start
            RETURNING count
            """,
            [.text(bucket), .int(window)]
        )?.int("count") ?? 1
    }

    /// The failed sign-ins in a row on `email` from `source`, and when the last was; `nil` for none.
    func loginFailures(
        email: String,
        source: String,
        in executor: any SQLExecutor
    ) async throws -> (failures: Int64, lastFailureAt: Int64)? {
        guard
            let row = try await executor.queryFirst(
                "SELECT failures, last_failure_at FROM login_source_failures WHERE email = $1 AND source = $2",
                [.text(email), .text(source)]
            )
        else { return nil }
        return (try row.int("failures"), try row.int("last_failure_at"))
    }

    /// Counts a failed sign-in on `email` from `source` at `now`; a count idle for more than an hour starts again.
    func recordLoginFailure(email: String, source: String, at now: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            """
            INSERT INTO login_source_failures (email, source, failures, last_failure_at) VALUES ($1, $2, 1, $3)
            ON CONFLICT (email, source) DO UPDATE SET
                failures = CASE WHEN $3 - login_source_failures.last_failure_at > 3600000 THEN 1
                    ELSE login_source_failures.failures + 1 END,
                last_failure_at = $3
            """,
            [.text(email), .text(source), .int(now)]
        )
    }

    /// Forgets up to 100 counts whose last failure was before `cutoff`.
    func forgetLoginFailures(before cutoff: Int64, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            """
            DELETE FROM login_source_failures WHERE (email, source) IN (
                SELECT email, source FROM login_source_failures WHERE last_failure_at < $1 LIMIT 100)
            """,
            [.int(cutoff)]
        )
    }

    /// Clears the count of `email` from `source`.
    func clearLoginFailures(email: String, source: String, in executor: any SQLExecutor) async throws {
        try await executor.execute(
            "DELETE FROM login_source_failures WHERE email = $1 AND source = $2",
            [.text(email), .text(source)]
        )
    }
}
