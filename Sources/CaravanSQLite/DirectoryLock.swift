import CaravanStorage
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive advisory lock on `caravan.lock` in a data directory, held for the life of the process, so that a
/// second `caravan` process pointed at the same directory refuses to start instead of corrupting it.
final class DirectoryLock: Sendable {
    private let descriptor: Int32

    init(directory: String) throws(StorageError) {
        let path = directory + "/caravan.lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw StorageError(.unavailable, "Cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            var holder = ""
            if let text = try? String(contentsOfFile: path, encoding: .utf8), !text.isEmpty {
                holder = " (process \(text.trimmingCharacters(in: .whitespacesAndNewlines)))"
            }
            close(descriptor)
            throw StorageError(
                .locked,
                "Another caravan process\(holder) is using the data directory \(directory). "
                    + "Stop it, or give this one another --data directory."
            )
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(descriptor, 0)
        _ = pid.withCString { pwrite(descriptor, $0, strlen($0), 0) }
        self.descriptor = descriptor
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
