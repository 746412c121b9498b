import AsyncHTTPClient
public import CaravanCore
public import Foundation
import NIOCore
import NIOHTTP1

/// What a WebDriver server answered instead of success, or what the client could not get from it.
public struct WebDriverError: Error, Sendable, CustomStringConvertible {
    /// The W3C WebDriver error code: `no such element`, `stale element reference`, `javascript error`,
    /// `session not created`, `timeout`, `unknown error`…
    public var error: String
    /// The driver's explanation (or the client's, for an error it raised itself).
    public var message: String
    /// The HTTP status of the driver's answer; `nil` when the client raised the error (a wait that ran out, an
    /// answer it could not read).
    public var status: Int?

    /// An error with its W3C code.
    public init(error: String, message: String, status: Int? = nil) {
        self.error = error
        self.message = message
        self.status = status
    }

    /// The code and the message, for test failures and logs.
    public var description: String { "WebDriver error \(error): \(message)" }
}

/// A browser session on a W3C WebDriver server (ChromeDriver driving headless Chromium), for tests of pages as a
/// browser renders them and runs their scripts. `withWebDriverSession(driverURL:_:)` starts one and always ends it.
///
/// Each method sends one command (`find(css:)` and `waitUntil` repeat theirs until a deadline) and throws a
/// `WebDriverError` when the driver refuses it.
public struct WebDriverSession: Sendable {
    /// The driver's base URL, e.g. `http://127.0.0.1:9515`.
    public let driverURL: String
    /// The id the driver gave the session.
    public let id: String

    /// The driver that `scripts/test` starts (`scripts/lib/chromium.sh`): `CARAVAN_CHROMEDRIVER_URL`, when set.
    public static var configuredDriverURL: String? {
        ProcessInfo.processInfo.environment["CARAVAN_CHROMEDRIVER_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Chromium's flags: headless, no sandbox (tests run as root, in containers), no GPU, shared memory in /tmp
    /// rather than a small /dev/shm, and a window the size of a laptop's.
    public static let chromiumArguments = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
    ]

    /// How often `find(css:)` and `waitUntil` look again.
    static let pollInterval = Duration.milliseconds(100)

    /// Starts a browser through the driver at `driverURL`: Debian's `/usr/bin/chromium` when it is installed (else
    /// the driver's own choice) with `arguments`, pages given 30 s to load, the browser's console kept for
    /// `browserLogs()`. End it with `quit()`.
    public static func start(
        driverURL: String,
        arguments: [String] = chromiumArguments
    ) async throws -> WebDriverSession {
        let driverURL = driverURL.hasSuffix("/") ? String(driverURL.dropLast()) : driverURL
        var options: [String: JSONValue] = ["args": .array(arguments.map(JSONValue.string))]
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") {
            options["binary"] = "/usr/bin/chromium"
        }
        let capabilities: JSONValue = [
            "goog:chromeOptions": .object(options),
            "goog:loggingPrefs": ["browser": "ALL"],
            "timeouts": ["pageLoad": 30_000, "script": 30_000],
        ]
        let value = try await send(.POST, driverURL + "/session", ["capabilities": ["alwaysMatch": capabilities]])
        guard let id = value["sessionId"]?.stringValue else {
            throw WebDriverError(
                error: "session not created",
                message: "the answer has no sessionId: \(value.canonicalText)"
            )
        }
        return WebDriverSession(driverURL: driverURL, id: id)
    }

    /// Opens `url` and returns once the page has loaded.
    public func navigate(to url: String) async throws {
        _ = try await command(.POST, "/url", ["url": .string(url)])
    }

    /// The URL of the page shown, after any redirects.
    public func currentURL() async throws -> String {
        try Self.string(try await command(.GET, "/url"))
    }

    /// The page's `<title>`.
    public func title() async throws -> String {
        try Self.string(try await command(.GET, "/title"))
    }

    /// The first element that matches the CSS `selector`, waiting up to `timeout` for one to appear.
    /// - Throws: `WebDriverError` `no such element` when none appeared in time.
    public func find(css selector: String, timeout: Duration = .seconds(5)) async throws -> Element {
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                return try Element(self, try await command(.POST, "/element", Self.cssLocator(selector)))
            } catch let error as WebDriverError where error.error == "no such element" {
                guard ContinuousClock.now < deadline else {
                    throw WebDriverError(
                        error: error.error,
                        message: "no element matches `\(selector)` after \(timeout)",
                        status: error.status
                    )
                }
                try await Task.sleep(for: Self.pollInterval)
            }
        }
    }

    /// Every element that matches the CSS `selector` now, in document order (none is not an error).
    public func findAll(css selector: String) async throws -> [Element] {
        let value = try await command(.POST, "/elements", Self.cssLocator(selector))
        return try (value.arrayValue ?? []).map { try Element(self, $0) }
    }

    /// Waits until `condition` is true, asking it again every 100 ms. A `no such element` or `stale element
    /// reference` it throws counts as not yet (the page is still changing); any other error ends the wait. A
    /// `find(css:)` inside waits on its own: hold on to elements found before, or give it a short timeout.
    /// - Throws: `WebDriverError` `timeout`, naming `description`, when `condition` was still false at `timeout`.
    public func waitUntil(
        _ description: String = "the condition",
        timeout: Duration = .seconds(5),
        _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        var lastError: WebDriverError?
        while true {
            do {
                if try await condition() { return }
                lastError = nil
            } catch let error as WebDriverError
                where error.error == "no such element" || error.error == "stale element reference"
            {
                lastError = error
            }
            guard ContinuousClock.now < deadline else {
                let reason = lastError.map { " (last: \($0.message))" } ?? ""
                throw WebDriverError(
                    error: "timeout",
                    message: "\(description) did not hold within \(timeout)\(reason)"
                )
            }
            try await Task.sleep(for: Self.pollInterval)
        }
    }

    /// Runs `script` as the body of a function in the page and returns what it returns, as JSON (an element comes
    /// back as `{"element-6066-…": id}`). `args` are its `arguments`; pass `Element.reference` for an element.
    /// - Throws: `WebDriverError` `javascript error` when the script throws.
    @discardableResult
    public func executeScript(_ script: String, args: [JSONValue] = []) async throws -> JSONValue {
        try await command(.POST, "/execute/sync", ["script": .string(script), "args": .array(args)])
    }

    /// The page's HTML as the browser holds it now (the DOM serialized, not the bytes that were served).
    public func pageSource() async throws -> String {
        try Self.string(try await command(.GET, "/source"))
    }

    /// A PNG image of the window as it is now.
    public func screenshot() async throws -> Data {
        let encoded = try Self.string(try await command(.GET, "/screenshot"))
        guard let data = Data(base64Encoded: encoded) else {
            throw WebDriverError(error: "unknown error", message: "the screenshot is not base64")
        }
        return data
    }

    /// Takes a screenshot and writes it, as a PNG file, to `path`.
    public func saveScreenshot(to path: String) async throws {
        try await screenshot().write(to: URL(fileURLWithPath: path))
    }

    /// A message of the browser's console: a `console.error`, an uncaught exception, a resource that failed to load.
    public struct LogEntry: Sendable, Hashable {
        /// `SEVERE`, `WARNING`, `INFO` or `DEBUG`.
        public var level: String
        /// The message, prefixed with the URL and position it came from.
        public var message: String
        /// Where it came from: `console-api`, `javascript`, `network`…
        public var source: String?
    }

    /// The browser console's messages since the previous call (each is returned once). ChromeDriver's own command:
    /// other drivers do not have it.
    public func browserLogs() async throws -> [LogEntry] {
        let value = try await command(.POST, "/se/log", ["type": "browser"])
        return (value.arrayValue ?? []).map { entry in
            LogEntry(
                level: entry["level"]?.stringValue ?? "",
                message: entry["message"]?.stringValue ?? "",
                source: entry["source"]?.stringValue
            )
        }
    }

    /// Ends the session and closes its browser.
    public func quit() async throws {
        _ = try await Self.send(.DELETE, "\(driverURL)/session/\(id)", nil)
    }

    /// An element of the page a session shows. It stays valid until the element leaves the document (a
    /// navigation, a re-render); using it after that throws `WebDriverError` `stale element reference`.
    public struct Element: Sendable {
        /// The session whose page holds it.
        public let session: WebDriverSession
        /// The driver's id for it.
        public let id: String

        /// The key under which WebDriver names an element in JSON.
        static let referenceKey = "element-6066-11e4-a52e-4f735466cecf"

        init(_ session: WebDriverSession, _ value: JSONValue) throws {
            guard let id = value[Self.referenceKey]?.stringValue else {
                throw WebDriverError(
                    error: "unknown error",
                    message: "not an element reference: \(value.canonicalText)"
                )
            }
            self.session = session
            self.id = id
        }

        /// The element as an argument of `executeScript(_:args:)`, where it arrives as the DOM element.
        public var reference: JSONValue { [Self.referenceKey: .string(id)] }

        /// Clicks its centre, as a user would (scrolling it into view first).
        /// - Throws: `WebDriverError` `element not interactable` or `element click intercepted` when a user could not.
        public func click() async throws {
            _ = try await command(.POST, "/click", [:])
        }

        /// Types `text` into it, as key presses.
        public func sendKeys(_ text: String) async throws {
            _ = try await command(.POST, "/value", ["text": .string(text)])
        }

        /// Empties an input or a text area.
        public func clear() async throws {
            _ = try await command(.POST, "/clear", [:])
        }

        /// Its text as rendered: what a user sees, without hidden parts.
        public func text() async throws -> String {
            try WebDriverSession.string(try await command(.GET, "/text"))
        }

        /// The HTML attribute `name`, or `nil` when it has none.
        public func attribute(_ name: String) async throws -> String? {
            try await command(.GET, "/attribute/\(WebDriverSession.pathSegment(name))").stringValue
        }

        /// The DOM property `name` (e.g. `value`, `checked`, `disabled`): the live state, not the markup's.
        public func property(_ name: String) async throws -> JSONValue {
            try await command(.GET, "/property/\(WebDriverSession.pathSegment(name))")
        }

        private func command(_ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil) async throws -> JSONValue {
            try await session.command(method, "/element/\(id)\(path)", body)
        }
    }

    // MARK: - The protocol

    /// Sends a command of this session (`path` follows `/session/{id}`) and returns the `value` of the answer.
    func command(_ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil) async throws -> JSONValue {
        try await Self.send(method, "\(driverURL)/session/\(id)\(path)", body)
    }

    /// Sends one request to the driver and returns the `value` of its answer, or throws the error it holds.
    static func send(_ method: HTTPMethod, _ url: String, _ body: JSONValue?) async throws -> JSONValue {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
            request.body = .bytes(ByteBuffer(string: body.canonicalText))
        }
        // Longer than any page load (30 s): a command the driver is still working on is not cut short here.
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(90))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        let status = Int(response.status.code)
        guard let answer = try? JSONValue(parsing: bytes.readableBytesView) else {
            let text = String(buffer: bytes).prefix(300)
            throw WebDriverError(error: "unknown error", message: "\(method) \(url) answered \(status): \(text)")
        }
        let value = answer["value"] ?? .null
        guard status == 200 else {
            throw WebDriverError(
                error: value["error"]?.stringValue ?? "unknown error",
                message: value["message"]?.stringValue ?? "\(method) \(url) answered \(status)",
                status: status
            )
        }
        return value
    }

    static func string(_ value: JSONValue) throws -> String {
        guard let string = value.stringValue else {
            throw WebDriverError(
                error: "unknown error",
                message: "expected a string, the driver answered \(value.canonicalText)"
            )
        }
        return string
    }

    static func cssLocator(_ selector: String) -> JSONValue {
        ["using": "css selector", "value": .string(selector)]
    }

    static func pathSegment(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_.")))
            ?? name
    }
}

/// Starts a browser session through the driver at `driverURL`, runs `body` with it, and quits it, whether `body`
/// returned, threw or was cancelled, so that no browser outlives its test.
public func withWebDriverSession<T>(
    driverURL: String,
    arguments: [String] = WebDriverSession.chromiumArguments,
    _ body: (WebDriverSession) async throws -> T
) async throws -> T {
    let session = try await WebDriverSession.start(driverURL: driverURL, arguments: arguments)
    // The quit runs in a task of its own: a cancelled test still closes its browser.
    let result: T
    do {
        result = try await body(session)
    } catch {
        try? await Task { try await session.quit() }.value
        throw error
    }
    try await Task { try await session.quit() }.value
    return result
}
