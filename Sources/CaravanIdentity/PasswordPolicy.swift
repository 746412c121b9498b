public import CaravanCore

/// What a password must be: 12 to 1,024 characters, not one of the most common passwords nor a light variation
/// of one (case, a few digits or symbols around it), not the email address.
public enum PasswordPolicy {
    public static let minimumLength = 12
    public static let maximumLength = 1024

    static let common: Set<String> = Set(commonPasswordsText.split(separator: "\n").map(String.init))

    /// Checks a new password.
    /// - Throws: `CaravanError` `validation_failed` on `pointer`, saying why.
    public static func check(_ password: String, email: String, pointer: String = "/password") throws(CaravanError) {
        let length = password.count
        guard length >= minimumLength else {
            throw CaravanError.validation(pointer, "The password must be at least \(minimumLength) characters.")
        }
        guard length <= maximumLength else {
            throw CaravanError.validation(pointer, "The password must be at most \(maximumLength) characters.")
        }
        let lowered = password.lowercased()
        if isCommon(lowered) {
            throw CaravanError.validation(pointer, "This password is among the most commonly used; choose another.")
        }
        let local = email.lowercased().split(separator: "@").first.map(String.init) ?? ""
        if lowered == email.lowercased() || (local.count >= 4 && strip(lowered) == local) {
            throw CaravanError.validation(pointer, "The password must not be the email address.")
        }
        if Set(lowered).count <= 2 {
            throw CaravanError.validation(pointer, "The password repeats too few characters; choose another.")
        }
    }

    /// Whether `lowered` is a common password, or one with at most eight digits or symbols added around it.
    static func isCommon(_ lowered: String) -> Bool {
        if common.contains(lowered) { return true }
        let core = strip(lowered)
        return core.count >= 4 && lowered.count - core.count <= 8 && common.contains(core)
    }

    /// `text` without the digits, symbols and spaces at its ends.
    static func strip(_ text: String) -> String {
        let isFiller: (Character) -> Bool = { !$0.isLetter }
        return String(text.drop(while: isFiller).reversed().drop(while: isFiller).reversed())
    }
}
