import CaravanNotify
import Testing

@Suite struct NotificationValueTests {
    @Test func aNotificationKeepsItsText() {
        let note = Notification(title: "Run failed", text: "The run run_1 failed.")
        #expect(note.title == "Run failed" && note.text == "The run run_1 failed.")
    }
}
