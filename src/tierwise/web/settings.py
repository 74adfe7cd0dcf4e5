"""The [web] section of tierwise.toml: the dashboard and REST API server."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="Address to listen on (127.0.0.1 = this machine only) / 监听地址")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on / 监听端口")
    session_hours: float = Field(12.0, gt=0, description="Hours a login stays valid / 登录有效小时数")
    secure_cookies: bool = Field(
        False, description="Send the session cookie over HTTPS only (behind a TLS proxy) / 仅通过HTTPS发送会话Cookie"
    )
    max_upload_mb: int = Field(200, ge=1, description="Largest file an upload may have, in MB / 上传文件大小上限（MB）")
    max_json_kb: int = Field(
        1024, ge=1, description="Largest other request body (JSON, forms), in KB / 其他请求体（JSON、表单）上限（KB）"
    )
    login_attempts: int = Field(5, ge=1, description="Failed logins before a pause / 连续登录失败多少次后暂停")
    lockout_seconds: int = Field(300, ge=1, description="Pause after too many failed logins / 登录失败过多后的暂停秒数")
