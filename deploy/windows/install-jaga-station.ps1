# Installs the Jaga station agent as a Task Scheduler task that starts at boot and restarts
# on failure. Run in an elevated PowerShell from the folder holding station.toml + token.txt:
#   powershell -ExecutionPolicy Bypass -File install-jaga-station.ps1
# It installs exactly requirements/station.txt (the agent's lock, with hashes: no hub
# packages) and then Jaga itself from this checkout (or a wheel: -Source jaga-X.whl).
param(
    [string]$InstallDir = "C:\Jaga",
    [string]$Python = "py",
    [string]$Source = (Resolve-Path "$PSScriptRoot\..\..").Path
)
$ErrorActionPreference = "Stop"
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
& $Python -3.11 -m venv "$InstallDir\venv"
$Lock = Join-Path $Source "requirements\station.txt"
if (Test-Path $Source -PathType Leaf) { $Lock = Join-Path (Split-Path $Source) "station.txt" }
& "$InstallDir\venv\Scripts\python.exe" -m pip install --require-hashes --no-deps -r $Lock
& "$InstallDir\venv\Scripts\python.exe" -m pip install --no-deps --no-build-isolation $Source
& "$InstallDir\venv\Scripts\python.exe" -m pip check
foreach ($f in "station.toml", "token.txt") {
    if (Test-Path $f) { Copy-Item $f "$InstallDir\$f" -Force }
}
# Only Administrators and SYSTEM may read the token.
icacls "$InstallDir\token.txt" /inheritance:r /grant:r "SYSTEM:R" "Administrators:F" | Out-Null

$exe = "$InstallDir\venv\Scripts\jaga-station.exe"
$action = New-ScheduledTaskAction -Execute $exe -Argument "--config `"$InstallDir\station.toml`" run" `
    -WorkingDirectory $InstallDir
# At boot (no one needs to log in), plus at logon as a second chance.
$triggers = @((New-ScheduledTaskTrigger -AtStartup), (New-ScheduledTaskTrigger -AtLogOn))
$triggers[0].Delay = "PT30S"   # let the network come up
$settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
    -StartWhenAvailable -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) `
    -ExecutionTimeLimit ([TimeSpan]::Zero) -MultipleInstances IgnoreNew
$principal = New-ScheduledTaskPrincipal -UserId "SYSTEM" -LogonType ServiceAccount -RunLevel Highest
Register-ScheduledTask -TaskName "Jaga Station" -Action $action -Trigger $triggers -Settings $settings `
    -Principal $principal -Force | Out-Null
& $exe --config "$InstallDir\station.toml" check
Start-ScheduledTask -TaskName "Jaga Station"
Write-Host "Installed. Log: $InstallDir\jaga-station.log. Status: jaga-station --config $InstallDir\station.toml status"
