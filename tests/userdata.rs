//! The user's own data as a user keeps it: `contacts` and `settings`
//! through running `node run` processes, sealed so that no storing node
//! can read it and nobody but the user can change it.

mod common;

use common::cli::{json, run_err, run_ok, NodeProcess};
use p2psip::admin::{self, AdminError, GetRecordResult, Request};
use p2psip::identity::load_secret_key;
use p2psip::overlay::record::{PrivateSlot, Record, RecordKind};
use std::path::Path;
use std::time::Duration;

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 path").to_owned()
}

fn new_user(root: &Path, name: &str) -> String {
    let dir = p(root, name);
    run_ok(&[
        "identity",
        "new",
        "--dir",
        &dir,
        "--user",
        "--difficulty",
        "0",
    ]);
    dir
}

fn aor(user_dir: &str) -> String {
    let shown = json(&run_ok(&["identity", "show", "--dir", user_dir, "--json"]));
    format!("sip:{}@lab.example", shown["id"].as_str().expect("id"))
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
}

/// The record of `user`'s address book, as node `dir` finds it.
fn book_record(user: &str, dir: &str) -> Record {
    let key = load_secret_key(&Path::new(user).join("identity.key")).unwrap();
    let slot = PrivateSlot::new(&key, "contacts").unwrap();
    let found: GetRecordResult = admin::request(
        Path::new(dir),
        &Request::GetRecord {
            key: hex::encode(slot.key().0),
            kind: RecordKind::Private.to_u64(),
        },
    )
    .unwrap();
    Record::decode(&found.record).unwrap()
}

struct Overlay {
    nodes: Vec<NodeProcess>,
    dirs: Vec<String>,
    overlay: String,
}

/// Three nodes on loopback, every record on all three.
fn overlay(root: &Path) -> Overlay {
    let overlay = p(root, "overlay.toml");
    std::fs::write(
        &overlay,
        "name = \"lab.example\"\nid_difficulty = 4\nk = 8\nreplication = 3\n",
    )
    .unwrap();
    let mut nodes: Vec<NodeProcess> = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..3 {
        let dir = p(root, &format!("node{i}"));
        run_ok(&["identity", "new", "--dir", &dir, "--difficulty", "4"]);
        let listen = format!("127.44.{i}.1:0");
        let mut args = vec!["--dir", &dir, "--listen", &listen, "--overlay", &overlay];
        let boot;
        if let Some(first) = nodes.first() {
            boot = format!("{}@{}", first.id, first.addr);
            args.extend(["--bootstrap", &boot]);
        }
        nodes.push(NodeProcess::start(&args));
        dirs.push(dir);
    }
    for dir in &dirs {
        let ready = (0..100).any(|_| {
            let s = json(&run_ok(&["status", "--dir", dir, "--json"]));
            if s["table_size"].as_u64() == Some(2) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
            false
        });
        assert!(ready, "{dir} knows the other two");
    }
    Overlay {
        nodes,
        dirs,
        overlay,
    }
}

#[test]
fn a_user_keeps_an_address_book_and_settings_no_storing_node_can_read() {
    let root = tempfile::tempdir().unwrap();
    let net = overlay(root.path());
    let (a, b) = (&net.dirs[0], &net.dirs[1]);
    let alice = new_user(root.path(), "alice");
    let bob = new_user(root.path(), "bob");
    let bob_aor = aor(&bob);
    // identity new --user made the encryption key, 0600.
    let enc = Path::new(&alice).join("encryption.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&enc).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // An empty book to begin with.
    let list = json(&run_ok(&[
        "contacts",
        "list",
        "--user-dir",
        &alice,
        "--dir",
        a,
        "--json",
    ]));
    assert_eq!(list["contacts"], serde_json::json!([]));

    // The marker is a contact name: it must appear in no node's files.
    let added = json(&run_ok(&[
        "contacts",
        "add",
        "Zebramarker",
        &bob_aor,
        "--user-dir",
        &alice,
        "--dir",
        a,
        "--json",
    ]));
    assert_eq!(added["aor"], bob_aor.as_str());
    let first_book = book_record(&alice, a);
    run_ok(&[
        "contacts",
        "add",
        "carol",
        "sip:carol@example.org",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    // Read back through another node: the book lives in the overlay.
    let list = json(&run_ok(&[
        "contacts",
        "list",
        "--user-dir",
        &alice,
        "--dir",
        b,
        "--json",
    ]));
    assert_eq!(
        list["contacts"],
        serde_json::json!([
            {"name": "carol", "aor": "sip:carol@example.org"},
            {"name": "Zebramarker", "aor": bob_aor},
        ])
    );
    // Names are unique regardless of case; errors name the problem.
    let err = run_err(&[
        "contacts",
        "add",
        "zebraMARKER",
        "sip:x@y",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    assert!(err.contains("exists already"), "{err}");
    let err = run_err(&[
        "contacts",
        "add",
        "bob smith",
        "sip:x@y",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    assert!(err.contains("contact name \"bob smith\""), "{err}");
    let err = run_err(&[
        "contacts",
        "remove",
        "dave",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    assert!(err.contains("no contact named \"dave\""), "{err}");

    // vCard in and out.
    let vcf = p(root.path(), "phone.vcf");
    std::fs::write(
        &vcf,
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Dave Jones\r\nNICKNAME:dave\r\nIMPP:sip:dave@example.org\r\nEND:VCARD\r\n\
         BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Erin\r\nTEL:+15550100\r\nEND:VCARD\r\n",
    )
    .unwrap();
    let imported = json(&run_ok(&[
        "contacts",
        "import",
        &vcf,
        "--user-dir",
        &alice,
        "--dir",
        a,
        "--json",
    ]));
    assert_eq!(imported["imported"], 1);
    assert_eq!(imported["skipped"], 1);
    let vcard = run_ok(&["contacts", "export", "--user-dir", &alice, "--dir", a]);
    assert_eq!(vcard.matches("BEGIN:VCARD").count(), 3, "{vcard}");
    assert!(
        vcard.contains("NICKNAME:dave\r\nIMPP:sip:dave@example.org\r\n"),
        "{vcard}"
    );
    let baresip = run_ok(&[
        "contacts",
        "export",
        "--format",
        "baresip",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    assert!(
        baresip.contains(&format!("\"Zebramarker\" <{bob_aor}>\n")),
        "{baresip}"
    );
    // A bad card imports nothing and says which.
    std::fs::write(
        &vcf,
        "BEGIN:VCARD\nFN:Frank Smith\nIMPP:sip:frank@example.org\nEND:VCARD\n",
    )
    .unwrap();
    let err = run_err(&["contacts", "import", &vcf, "--user-dir", &alice, "--dir", a]);
    assert!(
        err.contains("nothing imported") && err.contains("card at line 1"),
        "{err}"
    );
    run_ok(&[
        "contacts",
        "remove",
        "DAVE",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    let list = json(&run_ok(&[
        "contacts",
        "list",
        "--user-dir",
        &alice,
        "--dir",
        a,
        "--json",
    ]));
    assert_eq!(list["contacts"].as_array().unwrap().len(), 2);

    // Settings.
    run_ok(&[
        "settings",
        "set",
        "do_not_disturb",
        "on",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    run_ok(&[
        "settings",
        "set",
        "forward_no_answer",
        "carol",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    run_ok(&[
        "settings",
        "set",
        "blocked",
        "sip:blockmarker@example.org",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    run_ok(&[
        "settings",
        "set",
        "display_name",
        "Settingsmarker",
        "--user-dir",
        &alice,
        "--dir",
        b,
    ]);
    let got = json(&run_ok(&[
        "settings",
        "get",
        "--user-dir",
        &alice,
        "--dir",
        b,
        "--json",
    ]));
    assert_eq!(
        got,
        serde_json::json!({
            "blocked": "sip:blockmarker@example.org",
            "display_name": "Settingsmarker",
            "do_not_disturb": "on",
            "forward_no_answer": "carol",
        })
    );
    let got = json(&run_ok(&[
        "settings",
        "get",
        "voicemail_after",
        "--user-dir",
        &alice,
        "--dir",
        a,
        "--json",
    ]));
    assert_eq!(got, serde_json::json!({"voicemail_after": null}));
    let err = run_err(&[
        "settings",
        "set",
        "voicemail_after",
        "2",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    assert!(
        err.contains("voicemail_after") && err.contains("seconds from 5 to 300"),
        "{err}"
    );
    let err = run_err(&[
        "settings",
        "set",
        "colour",
        "blue",
        "--user-dir",
        &alice,
        "--dir",
        a,
    ]);
    assert!(err.contains("no setting \"colour\""), "{err}");

    // Bob has his own (empty) book: he cannot find alice's.
    let list = json(&run_ok(&[
        "contacts",
        "list",
        "--user-dir",
        &bob,
        "--dir",
        a,
        "--json",
    ]));
    assert_eq!(list["contacts"], serde_json::json!([]));

    // No node's files hold the plaintext: neither the contact's name nor
    // the setting's value (the display name is public in the profile, so
    // it is looked for only in the private record's bytes below).
    let mut files = Vec::new();
    for dir in &net.dirs {
        files_under(Path::new(dir), &mut files);
    }
    assert!(
        files.iter().any(|(n, _)| n.ends_with(".redb")),
        "the stores are on disk"
    );
    for (name, bytes) in &files {
        assert!(
            !bytes
                .windows(11)
                .any(|w| w.eq_ignore_ascii_case(b"zebramarker")),
            "{name} holds a contact's name in clear"
        );
        assert!(
            !bytes
                .windows(11)
                .any(|w| w == b"dave@exampl" || w == b"carol@examp"),
            "{name} holds a contact's AOR in clear"
        );
        assert!(
            !bytes.windows(11).any(|w| w == b"blockmarker"),
            "{name} holds a setting in clear"
        );
    }

    // Nobody but alice writes her book: mallory signs a record for its
    // key, and every node refuses it.
    let genuine = book_record(&alice, a);
    let slot_key = genuine.key;
    let mallory = p2psip::identity::SecretKey::generate();
    let forged = Record::sign(
        &mallory,
        RecordKind::Private,
        slot_key,
        genuine.seq + 1,
        genuine.expires,
        genuine.value.clone(),
    );
    let refused = admin::request::<serde_json::Value>(
        Path::new(a),
        &Request::Publish {
            record: hex::encode(forged.encode()),
        },
    );
    match refused {
        Err(AdminError::Refused(e)) => assert!(e.contains("record refused"), "{e}"),
        other => panic!("a forged record was not refused: {other:?}"),
    }
    // An older version of her book replayed: no node takes it back.
    match admin::request::<serde_json::Value>(
        Path::new(b),
        &Request::Publish {
            record: hex::encode(first_book.encode()),
        },
    ) {
        Err(AdminError::Refused(e)) => assert!(e.contains("no node"), "{e}"),
        other => panic!("an old book was taken back: {other:?}"),
    }
    let err = run_err(&[
        "contacts",
        "list",
        "--user-dir",
        &alice,
        "--dir",
        "/nonexistent",
    ]);
    assert!(err.contains("no node is running"), "{err}");
    let list = json(&run_ok(&[
        "contacts",
        "list",
        "--user-dir",
        &alice,
        "--dir",
        b,
        "--json",
    ]));
    assert_eq!(list["contacts"].as_array().unwrap().len(), 2, "{list}");

    // Mallory can fetch the box, but it does not open with her key.
    let mallory_enc = p2psip::identity::sealing::EncryptionSecretKey::generate();
    let alice_key = load_secret_key(&Path::new(&alice).join("identity.key")).unwrap();
    let slot = PrivateSlot::new(&alice_key, "contacts").unwrap();
    assert!(slot
        .open(&mallory_enc, &genuine.key, &genuine.value)
        .is_err());

    // kill -9 of a holder: the others still serve the book; restarted
    // from its data directory, it serves it again.
    let mut net = net;
    net.nodes[0].child.kill().unwrap();
    net.nodes[0].child.wait().unwrap();
    let list = json(&run_ok(&[
        "contacts",
        "list",
        "--user-dir",
        &alice,
        "--dir",
        &net.dirs[2],
        "--json",
    ]));
    assert_eq!(list["contacts"].as_array().unwrap().len(), 2, "{list}");
    let boot = format!("{}@{}", net.nodes[1].id, net.nodes[1].addr);
    let restarted = NodeProcess::start(&[
        "--dir",
        &net.dirs[0],
        "--listen",
        "127.44.0.1:0",
        "--overlay",
        &net.overlay,
        "--bootstrap",
        &boot,
    ]);
    let list = json(&run_ok(&[
        "contacts",
        "list",
        "--user-dir",
        &alice,
        "--dir",
        &net.dirs[0],
        "--json",
    ]));
    assert_eq!(list["contacts"].as_array().unwrap().len(), 2, "{list}");
    drop(restarted);

    // A node that cannot find the book (here: a lone node of its own
    // overlay) does not make the next write start from an empty one.
    let lone = p(root.path(), "lone");
    run_ok(&["identity", "new", "--dir", &lone, "--difficulty", "4"]);
    let _lone_node = NodeProcess::start(&[
        "--dir",
        &lone,
        "--listen",
        "127.44.9.1:0",
        "--overlay",
        &net.overlay,
    ]);
    let err = run_err(&[
        "contacts",
        "add",
        "eve",
        "sip:eve@example.org",
        "--user-dir",
        &alice,
        "--dir",
        &lone,
    ]);
    assert!(
        err.contains("the overlay returned no address book") && err.contains("nothing changed"),
        "{err}"
    );
    let list = json(&run_ok(&[
        "contacts",
        "list",
        "--user-dir",
        &alice,
        "--dir",
        &net.dirs[1],
        "--json",
    ]));
    assert_eq!(list["contacts"].as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn a_user_without_an_encryption_key_is_told_how_to_make_one() {
    let root = tempfile::tempdir().unwrap();
    let alice = new_user(root.path(), "alice");
    std::fs::remove_file(Path::new(&alice).join("encryption.key")).unwrap();
    let err = run_err(&["contacts", "list", "--user-dir", &alice, "--dir", &alice]);
    assert!(
        err.contains("identity add-encryption-key --user-dir"),
        "{err}"
    );
    let out = json(&run_ok(&[
        "identity",
        "add-encryption-key",
        "--user-dir",
        &alice,
        "--json",
    ]));
    assert_eq!(out["encryption_public_key"].as_str().unwrap().len(), 64);
    // Never over an existing key.
    let err = run_err(&["identity", "add-encryption-key", "--user-dir", &alice]);
    assert!(err.contains("already exists"), "{err}");
    // A node identity has none.
    let node = p(root.path(), "node");
    run_ok(&["identity", "new", "--dir", &node, "--difficulty", "0"]);
    assert!(!Path::new(&node).join("encryption.key").exists());
    let err = run_err(&["identity", "add-encryption-key", "--user-dir", &node]);
    assert!(err.contains("a user identity is needed"), "{err}");
}
