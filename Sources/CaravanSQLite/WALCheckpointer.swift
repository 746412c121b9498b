import GRDB
import Logging
import Synchronization

/// Copies the write-ahead log back into the database file beside the writer, not inside a commit.
///
/// SQLite checkpoints by itself when a commit leaves the log past 1,000 pages, and that commit then waits for the copy
/// and an fsync of the database file: one request in a few hundred took 15–18 ms instead of 3 (W2's p99). Here a
/// connection of its own runs a passive checkpoint (which never blocks the writer or readers) after every
/// `interval` commits, one at a time. The writer's own checkpoint stays as a backstop, at a larger log (10,000
/// pages), should this fall behind. Durability is unchanged: a commit is durable once its log frames are synced.
final class WALCheckpointer: Sendable {
    private struct State {
        var commits = 0
        var running = false
    }

    private let connection: DatabaseQueue
    private let interval: Int
    private let logger: Logger
    private let state = Mutex(State())

    /// The log size at which the writer checkpoints by itself.
    static let writerBackstopPages = 10_000

    /// - Parameters:
    ///   - path: the database file (in WAL mode, opened by the pool).
    ///   - interval: commits between two checkpoints.
    init(path: String, interval: Int = 200, logger: Logger) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        self.connection = try DatabaseQueue(path: path, configuration: configuration)
        self.interval = interval
        self.logger = logger
    }

    /// Counts a commit, and starts a checkpoint when it is time and none is running.
    func committed() {
        let start = state.withLock { state -> Bool in
            state.commits += 1
            guard state.commits >= interval, !state.running else { return false }
            state.commits = 0
            state.running = true
            return true
        }
        guard start else { return }
        connection.asyncWriteWithoutTransaction { [self] db in
            do {
                try db.checkpoint(.passive)
            } catch {
                logger.debug(
                    "A WAL checkpoint failed; the next one will copy what it did not",
                    metadata: ["error.message": "\(error)"]
                )
            }
            self.state.withLock { $0.running = false }
        }
    }
}
