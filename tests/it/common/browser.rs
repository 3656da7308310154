//! A real headless Chromium (Debian's `chromium`, driven through `chromedriver` over
//! WebDriver) for the dashboard's tests. The browser never downloads anything: Debian's
//! binaries are used as they are, with the flags this machine's closed network needs.
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::{KillOnDrop, free_port, services_required, wait_for};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session and the chromedriver behind it (killed when dropped).
pub struct Browser {
    pub client: Client,
    _driver: KillOnDrop,
    profile: PathBuf,
}

impl Browser {
    /// A fresh headless Chromium with an empty profile; `None` (with a note) when Debian's
    /// chromium is not installed and the run does not require it (`.ci/run` installs it).
    pub async fn start() -> Option<Self> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            assert!(
                !services_required(),
                "{CHROMEDRIVER} or {CHROMIUM} is missing: apt-get install chromium chromium-driver"
            );
            eprintln!("note: skipping a browser test: {CHROMEDRIVER} is not installed");
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = KillOnDrop(driver);
        let profile =
            std::env::temp_dir().join(format!("atelier-chromium-{}", uuid::Uuid::new_v4()));
        let url = format!("http://127.0.0.1:{port}");
        let client = connect(&url, &profile).await;
        Some(Self {
            client,
            _driver: driver,
            profile,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// The element `css` selects, waiting for it to appear.
    pub async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no element {css}: {error}"))
    }

    /// The text of the element `css` selects, read in one script: a live page may swap the
    /// element between a lookup and a read.
    pub async fn text(&self, css: &str) -> String {
        self.element(css).await;
        let text = self
            .client
            .execute(
                "const found = document.querySelector(arguments[0]); \
                 return found ? found.textContent.trim() : null;",
                vec![json!(css)],
            )
            .await
            .expect("read the element's text");
        text.as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// Clicks the element `css` selects, once it is there.
    pub async fn click(&self, css: &str) {
        self.element(css)
            .await
            .click()
            .await
            .unwrap_or_else(|error| panic!("click {css}: {error}"));
    }

    /// Types `text` into the field `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.element(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|error| panic!("type into {css}: {error}"));
    }

    /// Waits until the element `css` selects has the text `expected` (a live page changes
    /// without a reload).
    pub async fn wait_text(&self, css: &str, expected: &str) {
        wait_for(
            &format!("{css} to read {expected:?}"),
            Duration::from_secs(20),
            || async {
                match self.text(css).await {
                    text if text == expected => Ok(()),
                    text => Err(text),
                }
            },
        )
        .await;
    }

    /// Whether anything on the page matches `css`, now (no waiting).
    pub async fn has(&self, css: &str) -> bool {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|found| !found.is_empty())
            .unwrap_or(false)
    }

    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current url")
            .path()
            .to_owned()
    }

    /// Saves the whole page, not only what the window shows, as
    /// `target/screenshots/{name}.png` (for people to look at): the window grows to the page's
    /// height (up to 3,000 pixels) for the picture, then shrinks back.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .ok()
            .and_then(|height| height.as_u64())
            .unwrap_or(900)
            .clamp(900, 3000) as u32;
        self.client.set_window_size(1280, height + 140).await.ok();
        let png = self.client.screenshot().await.expect("screenshot");
        self.client.set_window_size(1280, 900).await.ok();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The value of the cookie `name`, as the browser holds it.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let cookies = self.client.get_all_cookies().await.expect("cookies");
        cookies
            .into_iter()
            .find(|cookie| cookie.name() == name)
            .map(|cookie| cookie.value().to_owned())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed never closed its session: chromedriver dies with `_driver`, but
        // the browser it started would outlive the test. Its profile directory names it.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.profile.as_os_str())
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A WebDriver session once chromedriver answers.
async fn connect(url: &str, profile: &std::path::Path) -> Client {
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": args}});
    // Both rustls providers are compiled in; fantoccini's client asks for the default one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    wait_for(
        "chromedriver to start a session",
        Duration::from_secs(30),
        || {
            let capabilities = capabilities.clone();
            async move {
                ClientBuilder::rustls()
                    .expect("a TLS configuration")
                    .capabilities(capabilities)
                    .connect(url)
                    .await
                    .map_err(|error| error.to_string())
            }
        },
    )
    .await
}
