//! The mails maru sends, in Korean and English (plain text, UTF-8; the English ones pure ASCII,
//! so they travel unencoded).

/// What a mail is for (the `kind` label of the email metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    VerificationCode,
    PasswordReset,
    /// A code proving an account's owner asks to link an external identity to it.
    LinkCode,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::VerificationCode, Kind::PasswordReset, Kind::LinkCode];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VerificationCode => "verification_code",
            Kind::PasswordReset => "password_reset",
            Kind::LinkCode => "link_code",
        }
    }

    /// The label of a stored kind (an unknown one counts as `other`).
    pub(super) fn label(s: &str) -> &'static str {
        Kind::ALL.iter().find(|k| k.as_str() == s).map_or("other", |k| k.as_str())
    }
}

/// The language of a mail: the account's locale where it has one, else the request's `lang`,
/// else Korean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Ko,
    En,
}

impl Lang {
    /// `""` (Korean), or a language tag whose primary subtag is `ko` or `en` (`en-US`, `KO`).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let primary = raw.trim().split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
        match primary.as_str() {
            "" | "ko" => Ok(Lang::Ko),
            "en" => Ok(Lang::En),
            _ => Err("must be ko or en (or empty for ko)".into()),
        }
    }
}

/// A subject and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// The mail carrying an email verification code valid for `minutes`.
pub fn verification_code(lang: Lang, code: &str, minutes: u64) -> Rendered {
    match lang {
        Lang::Ko => Rendered {
            subject: format!("[maru] 이메일 인증 코드: {code}"),
            body: format!(
                "안녕하세요.\n\n이메일 인증 코드는 {code} 입니다.\n\
                 코드는 {minutes}분 동안 유효하며, 5번 틀리면 새 코드를 요청해야 합니다.\n\n\
                 직접 요청하지 않으셨다면 이 메일을 무시하세요.\n\n— maru\n"
            ),
        },
        Lang::En => Rendered {
            subject: format!("[maru] Your email verification code: {code}"),
            body: format!(
                "Hello,\n\nYour email verification code is {code}.\n\
                 It is valid for {minutes} minutes; after 5 wrong tries you need a new code.\n\n\
                 If you did not ask for it, ignore this mail.\n\n-- maru\n"
            ),
        },
    }
}

/// The mail carrying the code that links a sign-in at `provider` (its configured name) to the
/// account, valid for `minutes`. It says what the code does, so that a person who did not ask
/// for it knows not to hand it over.
pub fn link_code(lang: Lang, code: &str, minutes: u64, provider: &str) -> Rendered {
    match lang {
        Lang::Ko => Rendered {
            subject: format!("[maru] {provider} 로그인 연결 코드: {code}"),
            body: format!(
                "안녕하세요.\n\n{provider} 계정으로 로그인하면서 이 계정에 연결해 달라는 요청이 있었습니다.\n\
                 연결 코드는 {code} 입니다. {minutes}분 동안 유효합니다.\n\n\
                 직접 요청하셨을 때만 입력하세요. 코드를 입력하면 그 {provider} 계정으로도 이 계정에 로그인할 수 있습니다.\n\
                 요청하지 않으셨다면 이 메일을 무시하세요. 아무것도 연결되지 않으며, 코드를 누구에게도 알려주지 마세요.\n\n— maru\n"
            ),
        },
        Lang::En => Rendered {
            subject: format!("[maru] Code to link your {provider} sign-in: {code}"),
            body: format!(
                "Hello,\n\nSomeone signing in with {provider} asked to link that sign-in to your account.\n\
                 The link code is {code}. It is valid for {minutes} minutes.\n\n\
                 Enter it only if you asked for this: once linked, that {provider} account signs in to yours.\n\
                 If you did not ask for it, ignore this mail: nothing is linked. Never give the code to anyone.\n\n-- maru\n"
            ),
        },
    }
}

/// The mail carrying a password reset token valid for `minutes`, as a link when `reset_url`
/// (with `{token}`) is set.
pub fn password_reset(lang: Lang, token: &str, minutes: u64, reset_url: &str) -> Rendered {
    let how = if reset_url.is_empty() {
        match lang {
            Lang::Ko => format!("재설정 토큰: {token}"),
            Lang::En => format!("Reset token: {token}"),
        }
    } else {
        reset_url.replace("{token}", token)
    };
    match lang {
        Lang::Ko => Rendered {
            subject: "[maru] 비밀번호 재설정".into(),
            body: format!(
                "안녕하세요.\n\n비밀번호 재설정을 요청하셨습니다. 아래로 새 비밀번호를 설정하세요.\n\n{how}\n\n\
                 {minutes}분 동안 한 번만 쓸 수 있습니다. 재설정하면 모든 기기에서 로그아웃됩니다.\n\
                 직접 요청하지 않으셨다면 이 메일을 무시하세요. 비밀번호는 바뀌지 않습니다.\n\n— maru\n"
            ),
        },
        Lang::En => Rendered {
            subject: "[maru] Reset your password".into(),
            body: format!(
                "Hello,\n\nSomeone asked to reset the password of your account. Set a new one with:\n\n{how}\n\n\
                 It can be used once, within {minutes} minutes. Resetting signs you out on every device.\n\
                 If you did not ask for it, ignore this mail: your password stays as it is.\n\n-- maru\n"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_from_tags() {
        assert_eq!(Lang::parse(""), Ok(Lang::Ko));
        assert_eq!(Lang::parse("ko-KR"), Ok(Lang::Ko));
        assert_eq!(Lang::parse("EN_us"), Ok(Lang::En));
        assert!(Lang::parse("fr").is_err());
    }

    #[test]
    fn the_link_code_mail_names_its_provider_and_ends_its_subject_with_the_code() {
        for lang in [Lang::Ko, Lang::En] {
            let m = link_code(lang, "AB12CD", 5, "github");
            assert!(m.subject.ends_with(" AB12CD"), "{}", m.subject);
            assert!(m.subject.contains("github") && m.body.contains("github"));
            assert!(m.body.contains("AB12CD") && m.body.contains('5'));
        }
        assert!(link_code(Lang::En, "AB12CD", 5, "github").body.is_ascii());
    }

    #[test]
    fn templates_carry_the_secret_in_either_language() {
        let ko = verification_code(Lang::Ko, "AB3K9Z", 5);
        assert!(ko.subject.contains("인증") && ko.body.contains("AB3K9Z") && ko.body.contains("5분"));
        let en = verification_code(Lang::En, "AB3K9Z", 5);
        assert!(en.subject.contains("verification") && en.body.contains("5 minutes"));
        let link = password_reset(Lang::En, "tok", 30, "https://app.example.com/reset?token={token}");
        assert!(link.body.contains("https://app.example.com/reset?token=tok\n"));
        let plain = password_reset(Lang::Ko, "tok", 30, "");
        assert!(plain.body.contains("재설정 토큰: tok") && plain.body.contains("30분"));
    }
}
