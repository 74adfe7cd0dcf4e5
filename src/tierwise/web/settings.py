"""The [web] section of tierwise.toml: the dashboard and REST API server."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="Address to listen on (127.0.0.1 = this machine only) / 监听地址")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on / 监听端口")
    session_hours: float = Field(12.0, gt=0, description="Hours a login stays valid / 登录有效小时数")
    idle_minutes: float = Field(
        60.0, gt=0, description="Minutes without a request after which a login ends / 无操作多少分钟后登录失效"
    )
    secure_cookies: bool = Field(
        False, description="Send the session cookie over HTTPS only (behind a TLS proxy) / 仅通过HTTPS发送会话Cookie"
    )
    max_upload_mb: int = Field(200, ge=1, description="Largest file an upload may have, in MB / 上传文件大小上限（MB）")
    max_json_kb: int = Field(
        1024, ge=1, description="Largest other request body (JSON, forms), in KB / 其他请求体（JSON、表单）上限（KB）"
    )
    login_attempts: int = Field(
        5,
        ge=1,
        description="Failed logins of one name from one address before pauses / 同一用户名同一地址失败几次后暂停",
    )
    address_attempts: int = Field(
        20,
        ge=1,
        description="Failed logins from one address (any name) before pauses / 同一地址失败几次后暂停",
    )
    lockout_seconds: int = Field(
        30,
        ge=1,
        description="First pause after too many failures, doubled per further one / 首次暂停秒数，之后每次加倍",
    )
    lockout_max_seconds: int = Field(900, ge=1, description="Longest pause / 最长暂停秒数")
    trusted_proxies: list[str] = Field(
        [],
        description=(
            'Addresses or networks of reverse proxies whose X-Forwarded-For is believed, e.g. ["127.0.0.1"] / '
            "可信反向代理的地址或网段，仅信任其X-Forwarded-For"
        ),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"'{item}' is not an IP address or network like 10.0.0.0/8") from None
        return value
