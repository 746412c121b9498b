import ArgumentParser
import CaravanCore
import Foundation
import NIOHTTP1

extension Bench {
    /// A module that answers `{"sum": N}`: a checksum over `iterations` steps, the same C for the sandbox and natively.
    static let checksumSource = """
        typedef unsigned int u32;
        typedef unsigned long long u64;
        static u32 checksum(u32 iterations) {
            u32 a = 1, b = 0;
            for (u32 i = 0; i < iterations; i++) { a = (a * 1103515245u + 12345u) ^ (i >> 3); b += a >> 7; }
            return b;
        }
        #ifdef __wasm__
        extern unsigned char __heap_base;
        static unsigned char *heap = &__heap_base;
        __attribute__((export_name("caravan_alloc"))) void *caravan_alloc(u32 size) {
            unsigned char *p = heap; heap += (size + 7) & ~7u; return p;
        }
        static u32 digits(char *out, u32 v) {
            char d[10]; u32 n = 0; do { d[n++] = (char)('0' + v % 10); v /= 10; } while (v);
            for (u32 i = 0; i < n; i++) out[i] = d[n - 1 - i]; return n;
        }
        __attribute__((export_name("caravan_run"))) u64 caravan_run(const char *in, u32 len) {
            u32 iterations = 0;
            for (u32 i = 0; i < len; i++) if (in[i] >= '0' && in[i] <= '9') iterations = iterations * 10 + (u32)(in[i] - '0');
            char *out = caravan_alloc(32); u32 n = 0;
            const char *start = "{\\"sum\\":"; for (u32 i = 0; start[i]; i++) out[n++] = start[i];
            n += digits(out + n, checksum(iterations)); out[n++] = '}';
            return ((u64)(u32)out << 32) | n;
        }
        #else
        #include <stdio.h>
        #include <stdlib.h>
        int main(int argc, char **argv) { printf("%u\\n", checksum((u32)atoi(argv[1]))); return 0; }
        #endif
        """

    /// WebAssembly modules through the API: the first call of a new module (cold), the extra time of a warm call of
    /// a trivial module over a plain authenticated read, and a CPU-bound module against the same C run natively.
    func wasm() async throws -> [String: Double] {
        let clang = ["/opt/swift/usr/bin/clang", "/usr/bin/clang"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        guard let clang else { throw ValidationError("the wasm workload needs clang") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("caravan-bench-wasm-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("checksum.c")
        try Self.checksumSource.write(to: source, atomically: true, encoding: .utf8)
        try Self.run(
            clang,
            [
                "--target=wasm32", "-nostdlib", "-O2", "-Wl,--no-entry", "-o", directory.path + "/checksum.wasm",
                source.path,
            ]
        )
        try Self.run(clang, ["-O2", "-o", directory.path + "/checksum", source.path])
        let binary = try Data(contentsOf: directory.appendingPathComponent("checksum.wasm"))
        let iterations = 200_000_000

        return try await withServer { server in
            let base = "http://127.0.0.1:\(server.port)/v1/modules"
            let limits = #""limits": {"fuel": 10000000000, "timeout_ms": 60000}"#
            let upload = #"{"wasm": "\#(binary.base64EncodedString())", \#(limits)}"#
            guard try await Self.call(.PUT, base + "/checksum", body: upload).status == 201 else {
                throw ValidationError("the checksum module was refused")
            }
            // Cold: the first call of a module this node has not run (parsed and compiled on the way).
            var cold: [Double] = []
            for index in 0..<5 {
                let echo =
                    #"(module (memory (export "memory") 1) (global $h (mut i32) (i32.const 1024)) (data (i32.const 0) "{}\#(index)") (func (export "caravan_alloc") (param i32) (result i32) (local i32) (local.set 1 (global.get $h)) (global.set $h (i32.add (global.get $h) (local.get 0))) (local.get 1)) (func (export "caravan_run") (param i32 i32) (result i64) (i64.const 2)))"#
                let body = JSONValue.object(["wat": .string(echo)]).canonicalText
                guard try await Self.call(.PUT, base + "/echo-\(index)", body: body).status == 201 else {
                    throw ValidationError("the echo module was refused")
                }
                let start = ContinuousClock.now
                let answer = try await Self.call(.POST, base + "/echo-\(index)/call", body: #"{"input": {}}"#)
                guard answer.json["output"] == [:] else { throw ValidationError("echo failed: \(answer.json)") }
                cold.append(Self.milliseconds(ContinuousClock.now - start))
            }
            // Warm: the same trivial call again and again, beside a read of the module (auth, routing, a query).
            var calls: [Double] = []
            var reads: [Double] = []
            for index in 0..<1_100 {
                let start = ContinuousClock.now
                _ = try await Self.call(.GET, base + "/echo-0")
                let middle = ContinuousClock.now
                _ = try await Self.call(.POST, base + "/echo-0/call", body: #"{"input": {}}"#)
                if index >= 100 {
                    reads.append(Self.milliseconds(middle - start))
                    calls.append(Self.milliseconds(ContinuousClock.now - middle))
                }
            }
            calls.sort()
            reads.sort()
            // CPU-bound: the checksum in the sandbox (less a warm trivial call: HTTP and the call's set-up), against
            // the native build (less the same program's run with no iterations: its process start).
            let sandboxStart = ContinuousClock.now
            let computed = try await Self.call(
                .POST,
                base + "/checksum/call",
                body: #"{"input": {"n": \#(iterations)}}"#
            )
            let sandboxMilliseconds =
                Self.milliseconds(ContinuousClock.now - sandboxStart) - Self.percentile(calls, 0.5)
            let spawnStart = ContinuousClock.now
            try Self.run(directory.path + "/checksum", ["0"])
            let spawnMilliseconds = Self.milliseconds(ContinuousClock.now - spawnStart)
            let nativeStart = ContinuousClock.now
            let native = try Self.run(directory.path + "/checksum", [String(iterations)])
            let nativeMilliseconds = Self.milliseconds(ContinuousClock.now - nativeStart) - spawnMilliseconds
            guard
                computed.json["output"]?["sum"]
                    == .int(Int64(native.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1)
            else { throw ValidationError("the sandbox and the native build disagree: \(computed.json) vs \(native)") }
            return [
                "cold_call_ms": cold.sorted()[cold.count / 2],
                "warm_call_p50_ms": Self.percentile(calls, 0.5),
                "read_p50_ms": Self.percentile(reads, 0.5),
                "warm_overhead_p50_ms": Self.percentile(calls, 0.5) - Self.percentile(reads, 0.5),
                "cpu_sandbox_ms": sandboxMilliseconds,
                "cpu_native_ms": nativeMilliseconds,
                "cpu_slowdown": sandboxMilliseconds / nativeMilliseconds,
            ]
        }
    }

    /// Runs a program to its end. - Returns: what it printed.
    @discardableResult
    static func run(_ path: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("\(path) exited \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
