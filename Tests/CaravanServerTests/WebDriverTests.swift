import CaravanCore
import CaravanTestSupport
import Foundation
import Testing

/// The WebDriver client against a real headless Chromium, on a page of its own: what the console's browser tests
/// stand on works before any console page is involved.
@Suite(
    "WebDriver client",
    .tags(.integration),
    .enabled(if: WebDriverSession.configuredDriverURL != nil, "needs CARAVAN_CHROMEDRIVER_URL (scripts/test sets it)"),
    .timeLimit(.minutes(2))
)
struct WebDriverTests {
    /// A form whose button's click handler lives in a script file of its own: the page's policy, like the
    /// console's, refuses inline script, so the greeting appears only if the browser loaded and ran `/app.js`.
    static let site: [String: LoopbackFile] = [
        "/": LoopbackFile(
            "text/html; charset=utf-8",
            """
            <!doctype html>
            <html lang="en">
            <head><meta charset="utf-8"><title>WebDriver fixture</title><link rel="icon" href="data:,"></head>
            <body>
              <form id="greeting" action="/" method="get">
                <label>Name <input id="name" name="name" value="nobody"></label>
                <button id="greet" type="button">Greet</button>
              </form>
              <p id="out">Nobody greeted yet.</p>
              <ul><li>one</li><li>two</li><li>three</li></ul>
              <script src="/app.js"></script>
            </body>
            </html>
            """
        ),
        "/app.js": LoopbackFile(
            "text/javascript; charset=utf-8",
            """
            document.getElementById("greet").addEventListener("click", () => {
              const name = document.getElementById("name").value;
              setTimeout(() => { document.getElementById("out").textContent = `Hello, ${name}!`; }, 200);
            });
            """
        ),
    ]

    static let headers = [
        ("Content-Security-Policy", "default-src 'none'; script-src 'self'; img-src data:; form-action 'self'"),
        ("X-Content-Type-Options", "nosniff"),
    ]

    @Test("Chromium loads a page, takes typing and a click, runs the page's script and ours, and takes a screenshot")
    func drivesAPage() async throws {
        let driverURL = try #require(WebDriverSession.configuredDriverURL)
        try await withLoopbackSite(Self.site, headers: Self.headers) { port in
            try await withWebDriverSession(driverURL: driverURL) { session in
                let page = "http://127.0.0.1:\(port)/"
                try await session.navigate(to: page)
                #expect(try await session.currentURL() == page)
                #expect(try await session.title() == "WebDriver fixture")
                #expect(try await session.pageSource().contains(#"<form id="greeting""#))

                let name = try await session.find(css: "#name")
                #expect(try await name.attribute("value") == "nobody")
                try await name.clear()
                try await name.sendKeys("Ada")
                #expect(try await name.property("value") == "Ada")
                // The markup's attribute keeps what was served; the property is what was typed.
                #expect(try await name.attribute("value") == "nobody")
                #expect(try await name.attribute("placeholder") == nil)

                let out = try await session.find(css: "#out")
                #expect(try await out.text() == "Nobody greeted yet.")
                try await session.find(css: "#greet").click()
                // The handler answers after 200 ms: the wait, not luck, sees the change.
                try await session.waitUntil("the greeting appears") { try await out.text() == "Hello, Ada!" }

                #expect(try await session.executeScript("return document.title") == "WebDriver fixture")
                let sum = try await session.executeScript("return arguments[0] + arguments[1]", args: [2, 3])
                #expect(sum == 5)
                let tag = try await session.executeScript("return arguments[0].tagName", args: [out.reference])
                #expect(tag == "P")
                #expect(try await session.findAll(css: "li").count == 3)
                #expect(try await session.findAll(css: "table").isEmpty)

                let missing = await #expect(throws: WebDriverError.self) {
                    try await session.find(css: "#missing", timeout: .milliseconds(300))
                }
                #expect(missing?.error == "no such element")
                let failing = await #expect(throws: WebDriverError.self) {
                    try await session.executeScript("throw new Error('on purpose')")
                }
                #expect(failing?.error == "javascript error")

                let png = try await session.screenshot()
                #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), "\(png.prefix(8))")
                // Nothing went wrong in the page: no blocked script, no failed load, no exception.
                let problems = try await session.browserLogs().filter { $0.level == "SEVERE" }
                #expect(problems.isEmpty, "\(problems)")
            }
        }
    }

    @Test("a wait that never holds fails with a timeout error that names what it waited for")
    func waitTimesOut() async throws {
        let driverURL = try #require(WebDriverSession.configuredDriverURL)
        try await withWebDriverSession(driverURL: driverURL) { session in
            let error = await #expect(throws: WebDriverError.self) {
                try await session.waitUntil("the impossible", timeout: .milliseconds(300)) { false }
            }
            #expect(error?.error == "timeout")
            #expect(error?.message.contains("the impossible") == true)
        }
    }
}
