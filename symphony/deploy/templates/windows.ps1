# Symphony {{version}}: install the worker of pool {{pool}} on a Windows image (symphony deploy windows).
# Run once, as Administrator, by the image build (Packer, Azure Image Builder, or by hand before
# sysprep). Windows scale sets do not run custom data by themselves: this image runs the worker at
# every boot, reading its options from the VM's custom data when the scale set gives one.
#
# What it does:
#   1. a virtual environment in {{venv}} with Symphony ({{package}}) from {{python}};
#   2. the default options in {{config}} (below; the custom data file C:\AzureData\CustomData.bin,
#      a TOML file like it, replaces them at each boot when present);
#   3. a launcher, {{launcher}}, that fetches the secret files from Key Vault when configured,
#      then runs symphony-worker and starts it again 10 s after it fails (a clean exit, after a stop
#      or a Scheduled Event it obeyed, ends it);
#   4. a scheduled task, {{task}}, that runs the launcher at startup as NETWORK SERVICE.
#      A scheduled task, not a service wrapper: it needs no third-party binary (NSSM, WinSW) that a
#      high-security site would have to approve, and the launcher restarts the worker itself. Its
#      limit: Stop-ScheduledTask ends the process without a graceful stop; a worker on a VM gives
#      its work back through Azure's Scheduled Events (the worker watches them) and the scaler's
#      drain before it deletes a VM; a task killed any other way comes back when its lease lapses.
$ErrorActionPreference = 'Stop'
$Python = '{{python}}'
$Venv = '{{venv}}'
$Config = '{{config}}'
$Launcher = '{{launcher}}'
$TaskName = '{{task}}'
$SecretDir = '{{secret_dir}}'

# 1. Symphony in its own virtual environment
& $Python -m venv $Venv
& "$Venv\Scripts\python.exe" -m pip install --quiet --upgrade pip {{index_args}}
& "$Venv\Scripts\python.exe" -m pip install --quiet --upgrade {{index_args}} '{{package}}'

# 2. the default options (no secret in them: docs/configuration.md)
New-Item -ItemType Directory -Force -Path (Split-Path $Config), $SecretDir | Out-Null
$WorkerConfig = @'
{{config_toml}}'@
Set-Content -Path $Config -Value $WorkerConfig -Encoding ascii
# the secret files: for the worker's account (which fills them from Key Vault at each boot) and the
# administrators only
icacls $SecretDir /inheritance:r /grant:r 'NT AUTHORITY\NETWORK SERVICE:(OI)(CI)M' 'BUILTIN\Administrators:(OI)(CI)F' | Out-Null

# 3. the launcher
$LauncherText = @'
$ErrorActionPreference = 'Continue'
$Config = '{{config}}'
$Custom = 'C:\AzureData\CustomData.bin'
if ((Test-Path $Custom) -and ((Get-Item $Custom).Length -gt 0)) { $Config = $Custom }
{{fetch_secrets}}
while ($true) {
    & '{{venv}}\Scripts\symphony-worker.exe' --config $Config
    if ($LASTEXITCODE -eq 0) { break }
    Start-Sleep -Seconds 10
}
'@
Set-Content -Path $Launcher -Value $LauncherText -Encoding ascii

# 4. start it at every boot, as NETWORK SERVICE, for as long as it runs
$Action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument "-NoProfile -ExecutionPolicy Bypass -File `"$Launcher`""
$Trigger = New-ScheduledTaskTrigger -AtStartup
$Principal = New-ScheduledTaskPrincipal -UserId 'NT AUTHORITY\NETWORK SERVICE' -LogonType ServiceAccount
$Settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -RestartCount 999 `
    -RestartInterval (New-TimeSpan -Minutes 1) -StartWhenAvailable -AllowStartIfOnBatteries
Register-ScheduledTask -TaskName $TaskName -Action $Action -Trigger $Trigger -Principal $Principal `
    -Settings $Settings -Force | Out-Null
Write-Output "Symphony worker of pool {{pool}} installed: scheduled task $TaskName, options $Config"
