import Foundation
import Metrics
public import Prometheus
import Synchronization

/// The process's metrics: one Prometheus registry behind swift-metrics, bootstrapped once per process.
public enum Telemetry {
    /// The registry that `/metrics` renders.
    public static let registry = PrometheusCollectorRegistry()
    private static let bootstrapped = Mutex(false)

    /// Points swift-metrics at the Prometheus registry; later calls do nothing (tests build many applications).
    public static func bootstrapMetrics() {
        let first = bootstrapped.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        if first {
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        }
    }

    private static let residentMemory = registry.makeGauge(
        name: "process_resident_memory_bytes",
        help: "Resident set size of the process."
    )
    private static let virtualMemory = registry.makeGauge(
        name: "process_virtual_memory_bytes",
        help: "Virtual memory size of the process."
    )

    /// The Prometheus text of every metric, with process figures read just now.
    public static func render() -> String {
        if let (virtual, resident) = processMemory() {
            virtualMemory.set(Double(virtual))
            residentMemory.set(Double(resident))
        }
        return registry.emitToString()
    }

    /// Virtual and resident bytes from `/proc/self/statm` (Linux); `nil` elsewhere.
    static func processMemory() -> (Int, Int)? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ").compactMap { Int($0) }
        guard fields.count >= 2 else { return nil }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        return (fields[0] * page, fields[1] * page)
    }
}
