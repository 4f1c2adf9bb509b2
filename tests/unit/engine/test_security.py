"""``client_options`` and ``auth_failure`` (engine/security.py) and the validation of the ``kafka`` security keys."""

from __future__ import annotations

import copy
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from stream_processor.engine.exceptions import ConfigError
from stream_processor.engine.security import auth_failure, client_options
from stream_processor.engine.settings import KafkaSettings, load_settings
from stream_processor.market.settings import DEFAULT_CONFIG

PASSWORD = "pa55-w0rd"


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed CA, and a client certificate + key (the key also encrypted, its password in a file)."""
    folder = tmp_path_factory.mktemp("pem")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", "ca.key", "-out", "ca.crt",
        "-subj", "/CN=unit test CA")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", "client.key", "-out",
        "client.crt", "-subj", "/CN=streams")
    run("pkey", "-in", "client.key", "-aes256", "-passout", "pass:key-secret", "-out", "client-enc.key")
    (folder / "key.pass").write_text("key-secret\n")
    return {name: folder / name for name in ("ca.crt", "client.crt", "client.key", "client-enc.key", "key.pass")}


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "sasl-password"
    path.write_text(PASSWORD + "\n")  # as `kubectl create secret --from-file` or `echo` would leave it
    return path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config(**kafka)``: the shipped YAML with these ``kafka`` keys added, dumped to a temp file."""
    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())

    def write(**kafka: Any) -> Path:
        doc = copy.deepcopy(shipped)
        doc["kafka"].update({k: str(v) if isinstance(v, Path) else v for k, v in kafka.items()})
        path = tmp_path / "streams-config.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


def _kafka(**keys: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=["127.0.0.1:9093"], **keys)


def _error(path: Path, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=environ or {})
    return info.value


# ---- client_options -------------------------------------------------------------------------------------


def test_plaintext_gives_only_the_bootstrap_servers() -> None:
    assert client_options(KafkaSettings(bootstrap_servers=["a:9092", "b:9092"])) == {
        "bootstrap_servers": ["a:9092", "b:9092"]
    }


@pytest.mark.parametrize("check_hostname", [True, False])
def test_sasl_ssl_gives_mechanism_user_password_from_the_file_and_a_tls_context(
    pem: dict[str, Path], password_file: Path, check_hostname: bool
) -> None:
    kafka = _kafka(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="streams",
                   sasl_password_file=password_file, ssl_cafile=pem["ca.crt"], ssl_check_hostname=check_hostname)
    options = client_options(kafka)
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": ["127.0.0.1:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "streams",
        "sasl_plain_password": PASSWORD,  # the file's trailing newline is not part of it
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED  # the broker's certificate is verified either way
    assert any(c["subject"] == ((("commonName", "unit test CA"),),) for c in context.get_ca_certs())


def test_sasl_password_from_the_environment(pem: dict[str, Path], write_config: Callable[..., Path]) -> None:
    path = write_config(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="streams",
                        ssl_cafile=pem["ca.crt"])
    settings = load_settings(path, environ={"KAFKA_SASL_PASSWORD": PASSWORD})
    assert client_options(settings.kafka)["sasl_plain_password"] == PASSWORD
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump(mode="json"))


def test_sasl_plaintext_has_no_tls_context(password_file: Path) -> None:
    options = client_options(_kafka(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                                    sasl_username="streams", sasl_password_file=password_file))
    assert "ssl_context" not in options
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_plain_password"] == PASSWORD


def test_ssl_with_a_client_certificate(pem: dict[str, Path]) -> None:
    options = client_options(_kafka(security_protocol="SSL", ssl_cafile=pem["ca.crt"],
                                    ssl_certfile=pem["client.crt"], ssl_keyfile=pem["client.key"]))
    assert set(options) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_an_encrypted_client_key_is_opened_with_the_password_file(pem: dict[str, Path]) -> None:
    options = client_options(_kafka(security_protocol="SSL", ssl_cafile=pem["ca.crt"],
                                    ssl_certfile=pem["client.crt"], ssl_keyfile=pem["client-enc.key"],
                                    ssl_key_password_file=pem["key.pass"]))
    assert isinstance(options["ssl_context"], ssl.SSLContext)


# ---- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "key"),
    [("sasl_mechanism", "kafka.sasl_mechanism"), ("sasl_username", "kafka.sasl_username"),
     ("sasl_password_file", "kafka.sasl_password_file")],
)
def test_sasl_without_mechanism_user_or_password_names_the_key(
    write_config: Callable[..., Path], password_file: Path, drop: str, key: str
) -> None:
    keys = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "streams",
            "sasl_password_file": password_file}
    del keys[drop]
    error = _error(write_config(**keys))
    assert error.key == key
    assert "SASL_PLAINTEXT" in error.reason


def test_sasl_password_in_two_places_is_rejected(write_config: Callable[..., Path], password_file: Path) -> None:
    path = write_config(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="streams",
                        sasl_password_file=password_file)
    error = _error(path, {"KAFKA_SASL_PASSWORD": PASSWORD})
    assert error.key == "kafka.sasl_password_file"
    assert PASSWORD not in str(error)


@pytest.mark.parametrize("key", ["sasl_password", "ssl_key_password"])
def test_a_secret_in_the_yaml_is_rejected_naming_the_key(write_config: Callable[..., Path], key: str) -> None:
    path = write_config(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="streams",
                        **{key: PASSWORD})
    error = _error(path)
    assert error.key == f"kafka.{key}"
    assert error.source == str(path)
    assert f"KAFKA_{key.upper()}" in error.reason
    assert PASSWORD not in str(error)


def test_tls_files_on_plaintext_are_rejected(write_config: Callable[..., Path], pem: dict[str, Path]) -> None:
    error = _error(write_config(ssl_cafile=pem["ca.crt"]))
    assert error.key == "kafka.ssl_cafile"
    assert "PLAINTEXT" in error.reason


def test_tls_files_on_sasl_plaintext_are_rejected(write_config: Callable[..., Path], pem: dict[str, Path],
                                                 password_file: Path) -> None:
    error = _error(write_config(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                                sasl_password_file=password_file, ssl_cafile=pem["ca.crt"]))
    assert error.key == "kafka.ssl_cafile"


def test_sasl_keys_without_sasl_are_rejected(write_config: Callable[..., Path], pem: dict[str, Path]) -> None:
    error = _error(write_config(security_protocol="SSL", ssl_cafile=pem["ca.crt"], sasl_username="streams"))
    assert error.key == "kafka.sasl_username"


@pytest.mark.parametrize(("given", "missing"), [("ssl_certfile", "ssl_keyfile"), ("ssl_keyfile", "ssl_certfile")])
def test_a_client_certificate_needs_both_files(write_config: Callable[..., Path], pem: dict[str, Path],
                                               given: str, missing: str) -> None:
    path = write_config(security_protocol="SSL", ssl_cafile=pem["ca.crt"],
                        **{given: pem["client.crt" if given == "ssl_certfile" else "client.key"]})
    error = _error(path)
    assert error.key == f"kafka.{missing}"
    assert "ssl_certfile and ssl_keyfile" in error.reason


@pytest.mark.parametrize("key", ["ssl_cafile", "sasl_password_file"])
def test_a_missing_file_is_named(write_config: Callable[..., Path], tmp_path: Path, password_file: Path,
                                 key: str) -> None:
    missing = tmp_path / "nowhere" / "file.pem"
    keys: dict[str, Any] = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                            "sasl_username": "streams", "sasl_password_file": password_file, key: missing}
    error = _error(write_config(**keys))
    assert error.key == f"kafka.{key}"
    assert str(missing) in error.reason


def test_environment_overrides_set_the_security_keys(pem: dict[str, Path], write_config: Callable[..., Path],
                                                     password_file: Path) -> None:
    settings = load_settings(write_config(), environ={
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": "streams", "KAFKA_SASL_PASSWORD_FILE": str(password_file),
        "KAFKA_SSL_CAFILE": str(pem["ca.crt"]), "KAFKA_SSL_CERTFILE": str(pem["client.crt"]),
        "KAFKA_SSL_KEYFILE": str(pem["client-enc.key"]), "KAFKA_SSL_KEY_PASSWORD": "key-secret",
    })
    kafka = settings.kafka
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username) == ("SASL_SSL", "SCRAM-SHA-256",
                                                                                     "streams")
    assert kafka.ssl_certfile == pem["client.crt"] and kafka.ssl_keyfile == pem["client-enc.key"]
    options = client_options(kafka)
    assert options["sasl_plain_password"] == PASSWORD
    assert isinstance(options["ssl_context"], ssl.SSLContext)  # the encrypted key opened with the env password


def test_an_unknown_mechanism_from_the_environment_names_it(write_config: Callable[..., Path]) -> None:
    error = _error(write_config(), {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"})
    assert error.source == "environment KAFKA_SASL_MECHANISM"
    assert error.key == "kafka.sasl_mechanism"


# ---- auth_failure ---------------------------------------------------------------------------------------


def _chained(inner: BaseException) -> KafkaConnectionError:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise KafkaConnectionError("Connection at 127.0.0.1:9093 closed") from exc
    except KafkaConnectionError as outer:
        return outer


def test_auth_failure_finds_a_sasl_failure_in_the_chain(password_file: Path) -> None:
    kafka = _kafka(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="streams",
                   sasl_password_file=password_file)
    message = auth_failure(_chained(SaslAuthenticationFailed("invalid credentials")), kafka)
    assert message is not None and message.startswith("authentication failed")
    assert "SCRAM-SHA-512" in message and "'streams'" in message
    assert PASSWORD not in message


def test_auth_failure_tells_tls_failures() -> None:
    kafka = _kafka()
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate in certificate chain"
    message = auth_failure(untrusted, kafka)
    assert message is not None and "not trusted" in message and "self-signed" in message
    message = auth_failure(_chained(ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad "
                                                    "certificate")), kafka)
    assert message is not None and message.startswith("TLS failed")


def test_auth_failure_is_none_for_an_unreachable_broker() -> None:
    assert auth_failure(KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9, 2)]"), _kafka()) is None
    assert auth_failure(_chained(ConnectionRefusedError(111, "refused")), _kafka()) is None
    looped = KafkaConnectionError("a")
    looped.__context__ = KafkaConnectionError("b")
    looped.__context__.__context__ = looped  # a cycle ends the walk
    assert auth_failure(looped, _kafka()) is None
