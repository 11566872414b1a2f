
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'cdcctl' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'cdcctl'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'cdcctl' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('setup-source', 'setup-source', [CompletionResultType]::ParameterValue, 'Check and prepare Postgres for CDC: wal_level, slots, privileges, publication, slot')
            [CompletionResult]::new('generate-data', 'generate-data', [CompletionResultType]::ParameterValue, 'Fill Postgres with realistic rows and drive a stream of changes')
            [CompletionResult]::new('create-connector', 'create-connector', [CompletionResultType]::ParameterValue, 'Apply and manage Debezium connectors on Kafka Connect')
            [CompletionResult]::new('connector', 'connector', [CompletionResultType]::ParameterValue, 'Apply and manage Debezium connectors on Kafka Connect')
            [CompletionResult]::new('tail', 'tail', [CompletionResultType]::ParameterValue, 'Read CDC topics decoded: one line per change, or JSON, or the raw messages')
            [CompletionResult]::new('load', 'load', [CompletionResultType]::ParameterValue, 'Load CDC topics into the warehouse, keeping each table equal to its source table')
            [CompletionResult]::new('replay-dlq', 'replay-dlq', [CompletionResultType]::ParameterValue, 'Inspect the dead-letter topic of `load` and replay its messages after a fix')
            [CompletionResult]::new('health', 'health', [CompletionResultType]::ParameterValue, 'Is the pipeline healthy? One row per check, from Postgres to the warehouse')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Is the warehouse equal to the source? Row counts, checksums and, with --diff, the keys')
            [CompletionResult]::new('scd2', 'scd2', [CompletionResultType]::ParameterValue, 'Keep a Type 2 history (valid_from/valid_to/is_current) from the changes `load --history` kept')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Show every effective setting and where it came from (secrets as ****)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script to stdout')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cdcctl;setup-source' {
            [CompletionResult]::new('--tables', '--tables', [CompletionResultType]::ParameterName, 'Tables to capture, comma separated: `users,commerce.products,"My Table"`')
            [CompletionResult]::new('--schemas', '--schemas', [CompletionResultType]::ParameterName, 'Capture every table of these schemas, comma separated')
            [CompletionResult]::new('--publication', '--publication', [CompletionResultType]::ParameterName, 'Publication to create or extend')
            [CompletionResult]::new('--slot', '--slot', [CompletionResultType]::ParameterName, 'Logical replication slot (pgoutput) to create; none unless given')
            [CompletionResult]::new('--replica-identity', '--replica-identity', [CompletionResultType]::ParameterName, 'Set the replica identity of every chosen table (unchanged unless given)')
            [CompletionResult]::new('--postgres-url', '--postgres-url', [CompletionResultType]::ParameterName, 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--demo', '--demo', [CompletionResultType]::ParameterName, 'Create the demo schema (the seed pipelines'' four tables) and use its tables')
            [CompletionResult]::new('--apply-system', '--apply-system', [CompletionResultType]::ParameterName, 'Also run `ALTER SYSTEM` for wal_level, max_replication_slots and max_wal_senders')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the SQL that would run, and change nothing')
            [CompletionResult]::new('--teardown', '--teardown', [CompletionResultType]::ParameterName, 'Drop the slot (`--slot`) and the publication instead, reporting the WAL the slot retained')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;generate-data' {
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Tables to fill instead of the demo tables: `users,shop.orders` (repeatable)')
            [CompletionResult]::new('--rows', '--rows', [CompletionResultType]::ParameterName, 'Bulk-load N rows into each table with COPY, parents before children')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Then make N changes (inserts, updates, deletes as `--mix` says)')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Make changes for this long instead of a count: `30s`, `5m`, `1h`')
            [CompletionResult]::new('--rate', '--rate', [CompletionResultType]::ParameterName, 'Changes per second; 0 makes them as fast as possible')
            [CompletionResult]::new('--mix', '--mix', [CompletionResultType]::ParameterName, 'Relative weights of inserts, updates and deletes among the changes')
            [CompletionResult]::new('--tx-size', '--tx-size', [CompletionResultType]::ParameterName, 'Changes per transaction')
            [CompletionResult]::new('--seed', '--seed', [CompletionResultType]::ParameterName, 'Seed of the generator: the same seed on the same starting data gives the same rows')
            [CompletionResult]::new('--postgres-url', '--postgres-url', [CompletionResultType]::ParameterName, 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--large-text', '--large-text', [CompletionResultType]::ParameterName, 'Put values over 8 KB in one text column per table, so that TOAST is exercised')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;create-connector' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Connector name [default: `connect.connector`, i.e. `cdcctl`]')
            [CompletionResult]::new('--tables', '--tables', [CompletionResultType]::ParameterName, 'Tables to capture, comma separated: `users,commerce.products,"My Table"`')
            [CompletionResult]::new('--slot', '--slot', [CompletionResultType]::ParameterName, 'Replication slot [default: the connector''s current one, else `cdcctl_<name>`]')
            [CompletionResult]::new('--publication', '--publication', [CompletionResultType]::ParameterName, 'Publication [default: the connector''s current one, else see below]')
            [CompletionResult]::new('--topic-prefix', '--topic-prefix', [CompletionResultType]::ParameterName, 'Topic prefix: topics are `<PREFIX>.<schema>.<table>` [default: `kafka.topic_prefix`]')
            [CompletionResult]::new('--snapshot-mode', '--snapshot-mode', [CompletionResultType]::ParameterName, 'What the connector snapshots when it starts [default: initial]')
            [CompletionResult]::new('--decimal-handling', '--decimal-handling', [CompletionResultType]::ParameterName, 'How numeric and decimal columns are encoded [default: precise]')
            [CompletionResult]::new('--heartbeat', '--heartbeat', [CompletionResultType]::ParameterName, 'Heartbeat interval, so the slot advances while the tables are idle; 0 turns it off [default: 10s]')
            [CompletionResult]::new('--database-hostname', '--database-hostname', [CompletionResultType]::ParameterName, 'Postgres host as the Connect worker reaches it [default: `postgres.host`]')
            [CompletionResult]::new('--database-port', '--database-port', [CompletionResultType]::ParameterName, 'Postgres port as the Connect worker reaches it [default: `postgres.port`]')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Set any connector key, overriding everything else: `snapshot.mode=no_data` (repeatable)')
            [CompletionResult]::new('--from-file', '--from-file', [CompletionResultType]::ParameterName, 'Start from this connector config: Connect JSON (`{"name", "config"}` or a flat map) or TOML (flat keys, or `name` and a `[config]` table)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Longest wait with `--wait`; exit 1 when it passes')
            [CompletionResult]::new('--postgres-url', '--postgres-url', [CompletionResultType]::ParameterName, 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--no-schemas', '--no-schemas', [CompletionResultType]::ParameterName, 'Plain JSON messages without the Connect schema (the loader needs the schema)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Validate, print the final config (secrets as ****) and the diff; change nothing')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait until the connector and every task reach the new state (default on a terminal)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Return as soon as the worker accepted the change')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the worker''s connectors: state, tasks, topic prefix, slot and tables')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show a connector''s state and each task''s; exit 1 unless all are RUNNING')
            [CompletionResult]::new('restart', 'restart', [CompletionResultType]::ParameterValue, 'Restart the connector''s failed tasks (`--all`: the connector and every task)')
            [CompletionResult]::new('pause', 'pause', [CompletionResultType]::ParameterValue, 'Pause the connector: it stops reading, and its slot retains WAL meanwhile')
            [CompletionResult]::new('resume', 'resume', [CompletionResultType]::ParameterValue, 'Resume a paused or stopped connector')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the connector; `--drop-slot` also drops its replication slot')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cdcctl;connector' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Connector name [default: `connect.connector`, i.e. `cdcctl`]')
            [CompletionResult]::new('--tables', '--tables', [CompletionResultType]::ParameterName, 'Tables to capture, comma separated: `users,commerce.products,"My Table"`')
            [CompletionResult]::new('--slot', '--slot', [CompletionResultType]::ParameterName, 'Replication slot [default: the connector''s current one, else `cdcctl_<name>`]')
            [CompletionResult]::new('--publication', '--publication', [CompletionResultType]::ParameterName, 'Publication [default: the connector''s current one, else see below]')
            [CompletionResult]::new('--topic-prefix', '--topic-prefix', [CompletionResultType]::ParameterName, 'Topic prefix: topics are `<PREFIX>.<schema>.<table>` [default: `kafka.topic_prefix`]')
            [CompletionResult]::new('--snapshot-mode', '--snapshot-mode', [CompletionResultType]::ParameterName, 'What the connector snapshots when it starts [default: initial]')
            [CompletionResult]::new('--decimal-handling', '--decimal-handling', [CompletionResultType]::ParameterName, 'How numeric and decimal columns are encoded [default: precise]')
            [CompletionResult]::new('--heartbeat', '--heartbeat', [CompletionResultType]::ParameterName, 'Heartbeat interval, so the slot advances while the tables are idle; 0 turns it off [default: 10s]')
            [CompletionResult]::new('--database-hostname', '--database-hostname', [CompletionResultType]::ParameterName, 'Postgres host as the Connect worker reaches it [default: `postgres.host`]')
            [CompletionResult]::new('--database-port', '--database-port', [CompletionResultType]::ParameterName, 'Postgres port as the Connect worker reaches it [default: `postgres.port`]')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Set any connector key, overriding everything else: `snapshot.mode=no_data` (repeatable)')
            [CompletionResult]::new('--from-file', '--from-file', [CompletionResultType]::ParameterName, 'Start from this connector config: Connect JSON (`{"name", "config"}` or a flat map) or TOML (flat keys, or `name` and a `[config]` table)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Longest wait with `--wait`; exit 1 when it passes')
            [CompletionResult]::new('--postgres-url', '--postgres-url', [CompletionResultType]::ParameterName, 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--no-schemas', '--no-schemas', [CompletionResultType]::ParameterName, 'Plain JSON messages without the Connect schema (the loader needs the schema)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Validate, print the final config (secrets as ****) and the diff; change nothing')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait until the connector and every task reach the new state (default on a terminal)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Return as soon as the worker accepted the change')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the worker''s connectors: state, tasks, topic prefix, slot and tables')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show a connector''s state and each task''s; exit 1 unless all are RUNNING')
            [CompletionResult]::new('restart', 'restart', [CompletionResultType]::ParameterValue, 'Restart the connector''s failed tasks (`--all`: the connector and every task)')
            [CompletionResult]::new('pause', 'pause', [CompletionResultType]::ParameterValue, 'Pause the connector: it stops reading, and its slot retains WAL meanwhile')
            [CompletionResult]::new('resume', 'resume', [CompletionResultType]::ParameterValue, 'Resume a paused or stopped connector')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the connector; `--drop-slot` also drops its replication slot')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cdcctl;create-connector;list' {
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;connector;list' {
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;create-connector;status' {
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;connector;status' {
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;create-connector;restart' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Longest wait with `--wait`; exit 1 when it passes')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Restart the connector and every task, not only the failed ones')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait until the connector and every task reach the new state (default on a terminal)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Return as soon as the worker accepted the change')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;connector;restart' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Longest wait with `--wait`; exit 1 when it passes')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Restart the connector and every task, not only the failed ones')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait until the connector and every task reach the new state (default on a terminal)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Return as soon as the worker accepted the change')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;create-connector;pause' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Longest wait with `--wait`; exit 1 when it passes')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait until the connector and every task reach the new state (default on a terminal)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Return as soon as the worker accepted the change')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;connector;pause' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Longest wait with `--wait`; exit 1 when it passes')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait until the connector and every task reach the new state (default on a terminal)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Return as soon as the worker accepted the change')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;create-connector;resume' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Longest wait with `--wait`; exit 1 when it passes')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait until the connector and every task reach the new state (default on a terminal)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Return as soon as the worker accepted the change')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;connector;resume' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Longest wait with `--wait`; exit 1 when it passes')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait until the connector and every task reach the new state (default on a terminal)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Return as soon as the worker accepted the change')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;create-connector;delete' {
            [CompletionResult]::new('--postgres-url', '--postgres-url', [CompletionResultType]::ParameterName, 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--drop-slot', '--drop-slot', [CompletionResultType]::ParameterName, 'Also drop the replication slot (after resetting the offsets and deleting the connector)')
            [CompletionResult]::new('--drop-publication', '--drop-publication', [CompletionResultType]::ParameterName, 'Also drop the publication, unless another connector on the worker uses it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;connector;delete' {
            [CompletionResult]::new('--postgres-url', '--postgres-url', [CompletionResultType]::ParameterName, 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--drop-slot', '--drop-slot', [CompletionResultType]::ParameterName, 'Also drop the replication slot (after resetting the offsets and deleting the connector)')
            [CompletionResult]::new('--drop-publication', '--drop-publication', [CompletionResultType]::ParameterName, 'Also drop the publication, unless another connector on the worker uses it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;create-connector;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the worker''s connectors: state, tasks, topic prefix, slot and tables')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show a connector''s state and each task''s; exit 1 unless all are RUNNING')
            [CompletionResult]::new('restart', 'restart', [CompletionResultType]::ParameterValue, 'Restart the connector''s failed tasks (`--all`: the connector and every task)')
            [CompletionResult]::new('pause', 'pause', [CompletionResultType]::ParameterValue, 'Pause the connector: it stops reading, and its slot retains WAL meanwhile')
            [CompletionResult]::new('resume', 'resume', [CompletionResultType]::ParameterValue, 'Resume a paused or stopped connector')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the connector; `--drop-slot` also drops its replication slot')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cdcctl;create-connector;help;list' {
            break
        }
        'cdcctl;create-connector;help;status' {
            break
        }
        'cdcctl;create-connector;help;restart' {
            break
        }
        'cdcctl;create-connector;help;pause' {
            break
        }
        'cdcctl;create-connector;help;resume' {
            break
        }
        'cdcctl;create-connector;help;delete' {
            break
        }
        'cdcctl;create-connector;help;help' {
            break
        }
        'cdcctl;connector;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the worker''s connectors: state, tasks, topic prefix, slot and tables')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show a connector''s state and each task''s; exit 1 unless all are RUNNING')
            [CompletionResult]::new('restart', 'restart', [CompletionResultType]::ParameterValue, 'Restart the connector''s failed tasks (`--all`: the connector and every task)')
            [CompletionResult]::new('pause', 'pause', [CompletionResultType]::ParameterValue, 'Pause the connector: it stops reading, and its slot retains WAL meanwhile')
            [CompletionResult]::new('resume', 'resume', [CompletionResultType]::ParameterValue, 'Resume a paused or stopped connector')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the connector; `--drop-slot` also drops its replication slot')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cdcctl;connector;help;list' {
            break
        }
        'cdcctl;connector;help;status' {
            break
        }
        'cdcctl;connector;help;restart' {
            break
        }
        'cdcctl;connector;help;pause' {
            break
        }
        'cdcctl;connector;help;resume' {
            break
        }
        'cdcctl;connector;help;delete' {
            break
        }
        'cdcctl;connector;help;help' {
            break
        }
        'cdcctl;tail' {
            [CompletionResult]::new('--topic', '--topic', [CompletionResultType]::ParameterName, 'Read this topic (repeatable)')
            [CompletionResult]::new('--pattern', '--pattern', [CompletionResultType]::ParameterName, 'Read every topic whose whole name matches this regular expression')
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Where to start: `beginning`, `end`, `offset:N`, `offset:-N` (last N of each partition), `time:RFC3339` or a relative time such as `-5m`')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Stop after printing this many events')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Stop after printing this many events')
            [CompletionResult]::new('--op', '--op', [CompletionResultType]::ParameterName, 'Only these operations, comma separated: c, r, u, d, t, m (or create, read, update, delete, truncate, message)')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Only events whose key has this value: `id=42` (repeatable; `42` alone for one-column keys)')
            [CompletionResult]::new('--where', '--where', [CompletionResultType]::ParameterName, 'Only events whose row has this value: `status=paid` (the after image, or the before image of a delete; repeatable, all must match)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'How each event is printed [default: `pretty`, or `json` with `--output json`]')
            [CompletionResult]::new('--brokers', '--brokers', [CompletionResultType]::ParameterName, 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`')
            [CompletionResult]::new('--topic-prefix', '--topic-prefix', [CompletionResultType]::ParameterName, 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Keep reading new changes until interrupted (default on a terminal)')
            [CompletionResult]::new('--follow', '--follow', [CompletionResultType]::ParameterName, 'Keep reading new changes until interrupted (default on a terminal)')
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'Stop once every partition is read up to where it ended at start (default in a pipe)')
            [CompletionResult]::new('--until-end', '--until-end', [CompletionResultType]::ParameterName, 'Stop once every partition is read up to where it ended at start (default in a pipe)')
            [CompletionResult]::new('--tombstones', '--tombstones', [CompletionResultType]::ParameterName, 'Also print tombstones (the null-value message Kafka compaction uses after a delete)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;load' {
            [CompletionResult]::new('--topic', '--topic', [CompletionResultType]::ParameterName, 'Load this topic (repeatable)')
            [CompletionResult]::new('--pattern', '--pattern', [CompletionResultType]::ParameterName, 'Load every topic whose whole name matches this regular expression')
            [CompletionResult]::new('--sink', '--sink', [CompletionResultType]::ParameterName, 'Where the rows go: duckdb or snowflake [default: `load.sink`, duckdb]')
            [CompletionResult]::new('--group', '--group', [CompletionResultType]::ParameterName, 'Kafka consumer group whose committed offsets say where to resume [default: `load.group`, cdcctl-load]')
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Where a partition without committed offset starts')
            [CompletionResult]::new('--batch-size', '--batch-size', [CompletionResultType]::ParameterName, 'Flush a micro-batch at this many events [default: `load.batch_size`, 20000]')
            [CompletionResult]::new('--flush-interval', '--flush-interval', [CompletionResultType]::ParameterName, 'Flush a partial micro-batch after this long, e.g. `500ms` [default: `load.flush_interval`, 1s]')
            [CompletionResult]::new('--linger', '--linger', [CompletionResultType]::ParameterName, 'Once the topics have been read to their end, flush after the batch is this old')
            [CompletionResult]::new('--commit-interval', '--commit-interval', [CompletionResultType]::ParameterName, 'Commit the offsets of loaded batches this often (`0s`: after every batch)')
            [CompletionResult]::new('--dlq-topic', '--dlq-topic', [CompletionResultType]::ParameterName, 'Dead-letter topic for messages that cannot be loaded [default: `<prefix>.dlq`]')
            [CompletionResult]::new('--retry-base', '--retry-base', [CompletionResultType]::ParameterName, 'First wait before retrying a batch the warehouse could not take (unreachable, timed out, throttled); doubled with jitter up to --retry-cap')
            [CompletionResult]::new('--retry-cap', '--retry-cap', [CompletionResultType]::ParameterName, 'Longest wait between two retries of a batch')
            [CompletionResult]::new('--retry-max-elapsed', '--retry-max-elapsed', [CompletionResultType]::ParameterName, 'Give up (exit 3) when the warehouse has been unavailable this long')
            [CompletionResult]::new('--breaker-threshold', '--breaker-threshold', [CompletionResultType]::ParameterName, 'Consecutive failures that open the warehouse circuit breaker (no attempts while open)')
            [CompletionResult]::new('--breaker-open', '--breaker-open', [CompletionResultType]::ParameterName, 'How long the breaker stays open before one probe attempt')
            [CompletionResult]::new('--target-schema', '--target-schema', [CompletionResultType]::ParameterName, 'Put every target table in this schema (default: the source table''s schema)')
            [CompletionResult]::new('--table-map', '--table-map', [CompletionResultType]::ParameterName, 'Load a source table into another target: `public.users=app_users`, `commerce.users=shop.customers` (repeatable)')
            [CompletionResult]::new('--memory-limit', '--memory-limit', [CompletionResultType]::ParameterName, 'DuckDB''s memory limit (`SET memory_limit`); it spills to disk beyond it')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Write the metrics as JSON to this file, periodically and at exit')
            [CompletionResult]::new('--metrics-interval', '--metrics-interval', [CompletionResultType]::ParameterName, 'How often the metrics file is rewritten')
            [CompletionResult]::new('--metrics-addr', '--metrics-addr', [CompletionResultType]::ParameterName, 'Serve the metrics in Prometheus text format on this address, e.g. `127.0.0.1:9187`')
            [CompletionResult]::new('--brokers', '--brokers', [CompletionResultType]::ParameterName, 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`')
            [CompletionResult]::new('--topic-prefix', '--topic-prefix', [CompletionResultType]::ParameterName, 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`')
            [CompletionResult]::new('--duckdb-path', '--duckdb-path', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--duckdb', '--duckdb', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--no-dlq', '--no-dlq', [CompletionResultType]::ParameterName, 'Stop at the first message that cannot be loaded instead (exit 1, nothing committed past it)')
            [CompletionResult]::new('--until-caught-up', '--until-caught-up', [CompletionResultType]::ParameterName, 'Exit 0 once every partition is loaded up to where it ended at start (CI, Makefiles)')
            [CompletionResult]::new('--soft-delete', '--soft-delete', [CompletionResultType]::ParameterName, 'Keep deleted rows, flagged `_cdc_deleted = true`, instead of removing them')
            [CompletionResult]::new('--primary-key', '--primary-key', [CompletionResultType]::ParameterName, 'Declare a PRIMARY KEY on the key columns of tables it creates (DuckDB; slower MERGE)')
            [CompletionResult]::new('--history', '--history', [CompletionResultType]::ParameterName, 'Also append every change to `<table>__changes` (what `cdcctl scd2` builds history from)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;replay-dlq' {
            [CompletionResult]::new('--dlq-topic', '--dlq-topic', [CompletionResultType]::ParameterName, 'The dead-letter topic [default: `<prefix>.dlq`]')
            [CompletionResult]::new('--group', '--group', [CompletionResultType]::ParameterName, 'Consumer group that remembers what was replayed')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Only dead letters of this source table: `users`, `commerce.products`')
            [CompletionResult]::new('--error-class', '--error-class', [CompletionResultType]::ParameterName, 'Only dead letters of this error class: `invalid_json`, `unknown_op`, `type_mismatch`, ...')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only dead letters that first failed at or after this time (RFC 3339, or `-2h`)')
            [CompletionResult]::new('--offset', '--offset', [CompletionResultType]::ParameterName, 'Only the dead letter at this offset of the dead-letter topic')
            [CompletionResult]::new('--brokers', '--brokers', [CompletionResultType]::ParameterName, 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`')
            [CompletionResult]::new('--topic-prefix', '--topic-prefix', [CompletionResultType]::ParameterName, 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`')
            [CompletionResult]::new('--duckdb-path', '--duckdb-path', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--duckdb', '--duckdb', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Include dead letters already replayed (list and show)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Dead letters grouped by error class and table, with counts and first/last failure')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Dead letters one by one: where they came from, their headers, why they fail now')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Replay the selected dead letters that now decode; put the others back, counted')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cdcctl;replay-dlq;list' {
            [CompletionResult]::new('--dlq-topic', '--dlq-topic', [CompletionResultType]::ParameterName, 'The dead-letter topic [default: `<prefix>.dlq`]')
            [CompletionResult]::new('--group', '--group', [CompletionResultType]::ParameterName, 'Consumer group that remembers what was replayed')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Only dead letters of this source table: `users`, `commerce.products`')
            [CompletionResult]::new('--error-class', '--error-class', [CompletionResultType]::ParameterName, 'Only dead letters of this error class: `invalid_json`, `unknown_op`, `type_mismatch`, ...')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only dead letters that first failed at or after this time (RFC 3339, or `-2h`)')
            [CompletionResult]::new('--offset', '--offset', [CompletionResultType]::ParameterName, 'Only the dead letter at this offset of the dead-letter topic')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Include dead letters already replayed (list and show)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;replay-dlq;show' {
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most this many')
            [CompletionResult]::new('--dlq-topic', '--dlq-topic', [CompletionResultType]::ParameterName, 'The dead-letter topic [default: `<prefix>.dlq`]')
            [CompletionResult]::new('--group', '--group', [CompletionResultType]::ParameterName, 'Consumer group that remembers what was replayed')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Only dead letters of this source table: `users`, `commerce.products`')
            [CompletionResult]::new('--error-class', '--error-class', [CompletionResultType]::ParameterName, 'Only dead letters of this error class: `invalid_json`, `unknown_op`, `type_mismatch`, ...')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only dead letters that first failed at or after this time (RFC 3339, or `-2h`)')
            [CompletionResult]::new('--offset', '--offset', [CompletionResultType]::ParameterName, 'Only the dead letter at this offset of the dead-letter topic')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Include dead letters already replayed (list and show)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;replay-dlq;replay' {
            [CompletionResult]::new('--sink', '--sink', [CompletionResultType]::ParameterName, 'Where the rows go when applied: duckdb or snowflake [default: `load.sink`]')
            [CompletionResult]::new('--target-schema', '--target-schema', [CompletionResultType]::ParameterName, 'Target schema, as the loader''s `--target-schema`')
            [CompletionResult]::new('--table-map', '--table-map', [CompletionResultType]::ParameterName, 'Source table → target table, as the loader''s `--table-map` (repeatable)')
            [CompletionResult]::new('--dlq-topic', '--dlq-topic', [CompletionResultType]::ParameterName, 'The dead-letter topic [default: `<prefix>.dlq`]')
            [CompletionResult]::new('--group', '--group', [CompletionResultType]::ParameterName, 'Consumer group that remembers what was replayed')
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'Only dead letters of this source table: `users`, `commerce.products`')
            [CompletionResult]::new('--error-class', '--error-class', [CompletionResultType]::ParameterName, 'Only dead letters of this error class: `invalid_json`, `unknown_op`, `type_mismatch`, ...')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only dead letters that first failed at or after this time (RFC 3339, or `-2h`)')
            [CompletionResult]::new('--offset', '--offset', [CompletionResultType]::ParameterName, 'Only the dead letter at this offset of the dead-letter topic')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--to-source-topic', '--to-source-topic', [CompletionResultType]::ParameterName, 'Send them to their original topic instead of applying them to the warehouse')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what would be replayed and whether it would succeed; change nothing')
            [CompletionResult]::new('--soft-delete', '--soft-delete', [CompletionResultType]::ParameterName, 'As the loader''s `--soft-delete`: deletes flag rows instead of removing them')
            [CompletionResult]::new('--history', '--history', [CompletionResultType]::ParameterName, 'As the loader''s `--history`: the replayed changes are added to `<table>__changes` too (a later `cdcctl scd2` puts them in their place in the history)')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Include dead letters already replayed (list and show)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;replay-dlq;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Dead letters grouped by error class and table, with counts and first/last failure')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Dead letters one by one: where they came from, their headers, why they fail now')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Replay the selected dead letters that now decode; put the others back, counted')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cdcctl;replay-dlq;help;list' {
            break
        }
        'cdcctl;replay-dlq;help;show' {
            break
        }
        'cdcctl;replay-dlq;help;replay' {
            break
        }
        'cdcctl;replay-dlq;help;help' {
            break
        }
        'cdcctl;health' {
            [CompletionResult]::new('--watch', '--watch', [CompletionResultType]::ParameterName, 'Check again every INTERVAL until Ctrl-C (redrawn on a terminal; JSON lines with -o json)')
            [CompletionResult]::new('--slot-warn', '--slot-warn', [CompletionResultType]::ParameterName, 'WAL a replication slot may retain before a warning [default: `health.slot_warn`, 1GB]')
            [CompletionResult]::new('--slot-fail', '--slot-fail', [CompletionResultType]::ParameterName, 'WAL a replication slot may retain before the check fails [default: `health.slot_fail`, 10GB]')
            [CompletionResult]::new('--lag-warn', '--lag-warn', [CompletionResultType]::ParameterName, 'Messages the loader group may be behind before a warning [default: `health.lag_warn`, 10000]')
            [CompletionResult]::new('--lag-fail', '--lag-fail', [CompletionResultType]::ParameterName, 'Messages the loader group may be behind before the check fails [default: `health.lag_fail`, 1000000]')
            [CompletionResult]::new('--freshness-warn', '--freshness-warn', [CompletionResultType]::ParameterName, 'Time since a table''s last load before a warning [default: `health.freshness_warn`, 15m]')
            [CompletionResult]::new('--freshness-fail', '--freshness-fail', [CompletionResultType]::ParameterName, 'Time since a table''s last load before the check fails [default: `health.freshness_fail`, 6h]')
            [CompletionResult]::new('--loader-metrics', '--loader-metrics', [CompletionResultType]::ParameterName, 'A running loader''s --metrics-file: adds its warehouse circuit breaker and liveness')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long each layer''s checks may take')
            [CompletionResult]::new('--sink', '--sink', [CompletionResultType]::ParameterName, 'Where the loader writes: duckdb or snowflake [default: `load.sink`]')
            [CompletionResult]::new('--group', '--group', [CompletionResultType]::ParameterName, 'The loader''s consumer group, for its lag [default: `load.group`]')
            [CompletionResult]::new('--postgres-url', '--postgres-url', [CompletionResultType]::ParameterName, 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`')
            [CompletionResult]::new('--brokers', '--brokers', [CompletionResultType]::ParameterName, 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`')
            [CompletionResult]::new('--topic-prefix', '--topic-prefix', [CompletionResultType]::ParameterName, 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--snowflake-account', '--snowflake-account', [CompletionResultType]::ParameterName, 'Snowflake account identifier (`orgname-account`)')
            [CompletionResult]::new('--snowflake-url', '--snowflake-url', [CompletionResultType]::ParameterName, 'Snowflake endpoint URL, overriding the one derived from the account')
            [CompletionResult]::new('--duckdb-path', '--duckdb-path', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--duckdb', '--duckdb', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'Warnings fail too (exit 1)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;verify' {
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'With --diff, at most this many keys of each kind per table')
            [CompletionResult]::new('--sink', '--sink', [CompletionResultType]::ParameterName, 'Where the loader writes: duckdb or snowflake [default: `load.sink`]')
            [CompletionResult]::new('--group', '--group', [CompletionResultType]::ParameterName, 'The loader''s consumer group, for its lag [default: `load.group`]')
            [CompletionResult]::new('--postgres-url', '--postgres-url', [CompletionResultType]::ParameterName, 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`')
            [CompletionResult]::new('--brokers', '--brokers', [CompletionResultType]::ParameterName, 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`')
            [CompletionResult]::new('--topic-prefix', '--topic-prefix', [CompletionResultType]::ParameterName, 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--snowflake-account', '--snowflake-account', [CompletionResultType]::ParameterName, 'Snowflake account identifier (`orgname-account`)')
            [CompletionResult]::new('--snowflake-url', '--snowflake-url', [CompletionResultType]::ParameterName, 'Snowflake endpoint URL, overriding the one derived from the account')
            [CompletionResult]::new('--duckdb-path', '--duckdb-path', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--duckdb', '--duckdb', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--diff', '--diff', [CompletionResultType]::ParameterName, 'List the keys that are missing, extra or different, with the differing columns')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;scd2' {
            [CompletionResult]::new('--table', '--table', [CompletionResultType]::ParameterName, 'The loaded table: `users` (schema `public`) or `schema.table`, as `load` named it')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Key columns, comma separated [default: the key of the previous run]')
            [CompletionResult]::new('--track', '--track', [CompletionResultType]::ParameterName, 'Columns whose changes make a new version, comma separated [default: every non-key column]')
            [CompletionResult]::new('--history-table', '--history-table', [CompletionResultType]::ParameterName, 'The history table [default: `<table>_history`, in the table''s schema]')
            [CompletionResult]::new('--as-of', '--as-of', [CompletionResultType]::ParameterName, 'Print the table as it was at this instant (RFC 3339, or `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC) instead of updating the history')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'With --check, list at most this many violations per rule')
            [CompletionResult]::new('--sink', '--sink', [CompletionResultType]::ParameterName, 'Where the loader writes: duckdb or snowflake [default: `load.sink`]')
            [CompletionResult]::new('--snowflake-account', '--snowflake-account', [CompletionResultType]::ParameterName, 'Snowflake account identifier (`orgname-account`)')
            [CompletionResult]::new('--snowflake-url', '--snowflake-url', [CompletionResultType]::ParameterName, 'Snowflake endpoint URL, overriding the one derived from the account')
            [CompletionResult]::new('--duckdb-path', '--duckdb-path', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--duckdb', '--duckdb', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--keep-deleted', '--keep-deleted', [CompletionResultType]::ParameterName, 'A delete also adds a current `is_deleted` version (the key''s last values), instead of only closing the version')
            [CompletionResult]::new('--rebuild', '--rebuild', [CompletionResultType]::ParameterName, 'Recompute the whole history from the changes table (needed to change --key, --track or --keep-deleted)')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Validate the history instead of updating it: one current row per live key, no overlapping or gapped intervals, valid_from < valid_to, versions 1, 2, 3… (exit 1 on any violation)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;config' {
            [CompletionResult]::new('--postgres-url', '--postgres-url', [CompletionResultType]::ParameterName, 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`')
            [CompletionResult]::new('--brokers', '--brokers', [CompletionResultType]::ParameterName, 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`')
            [CompletionResult]::new('--topic-prefix', '--topic-prefix', [CompletionResultType]::ParameterName, 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--snowflake-account', '--snowflake-account', [CompletionResultType]::ParameterName, 'Snowflake account identifier (`orgname-account`)')
            [CompletionResult]::new('--snowflake-url', '--snowflake-url', [CompletionResultType]::ParameterName, 'Snowflake endpoint URL, overriding the one derived from the account')
            [CompletionResult]::new('--duckdb-path', '--duckdb-path', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--duckdb', '--duckdb', [CompletionResultType]::ParameterName, 'DuckDB database file')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;completions' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of cdcctl.toml to use (`[profiles.NAME]`)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file to read instead of the searched ones')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format: tables for people, or JSON for scripts')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more to stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors: no progress, no warnings')
            [CompletionResult]::new('--no-color', '--no-color', [CompletionResultType]::ParameterName, 'Never use colour (also when `NO_COLOR` is set)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to every confirmation prompt')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cdcctl;help' {
            [CompletionResult]::new('setup-source', 'setup-source', [CompletionResultType]::ParameterValue, 'Check and prepare Postgres for CDC: wal_level, slots, privileges, publication, slot')
            [CompletionResult]::new('generate-data', 'generate-data', [CompletionResultType]::ParameterValue, 'Fill Postgres with realistic rows and drive a stream of changes')
            [CompletionResult]::new('create-connector', 'create-connector', [CompletionResultType]::ParameterValue, 'Apply and manage Debezium connectors on Kafka Connect')
            [CompletionResult]::new('tail', 'tail', [CompletionResultType]::ParameterValue, 'Read CDC topics decoded: one line per change, or JSON, or the raw messages')
            [CompletionResult]::new('load', 'load', [CompletionResultType]::ParameterValue, 'Load CDC topics into the warehouse, keeping each table equal to its source table')
            [CompletionResult]::new('replay-dlq', 'replay-dlq', [CompletionResultType]::ParameterValue, 'Inspect the dead-letter topic of `load` and replay its messages after a fix')
            [CompletionResult]::new('health', 'health', [CompletionResultType]::ParameterValue, 'Is the pipeline healthy? One row per check, from Postgres to the warehouse')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Is the warehouse equal to the source? Row counts, checksums and, with --diff, the keys')
            [CompletionResult]::new('scd2', 'scd2', [CompletionResultType]::ParameterValue, 'Keep a Type 2 history (valid_from/valid_to/is_current) from the changes `load --history` kept')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Show every effective setting and where it came from (secrets as ****)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script to stdout')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cdcctl;help;setup-source' {
            break
        }
        'cdcctl;help;generate-data' {
            break
        }
        'cdcctl;help;create-connector' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the worker''s connectors: state, tasks, topic prefix, slot and tables')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show a connector''s state and each task''s; exit 1 unless all are RUNNING')
            [CompletionResult]::new('restart', 'restart', [CompletionResultType]::ParameterValue, 'Restart the connector''s failed tasks (`--all`: the connector and every task)')
            [CompletionResult]::new('pause', 'pause', [CompletionResultType]::ParameterValue, 'Pause the connector: it stops reading, and its slot retains WAL meanwhile')
            [CompletionResult]::new('resume', 'resume', [CompletionResultType]::ParameterValue, 'Resume a paused or stopped connector')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the connector; `--drop-slot` also drops its replication slot')
            break
        }
        'cdcctl;help;create-connector;list' {
            break
        }
        'cdcctl;help;create-connector;status' {
            break
        }
        'cdcctl;help;create-connector;restart' {
            break
        }
        'cdcctl;help;create-connector;pause' {
            break
        }
        'cdcctl;help;create-connector;resume' {
            break
        }
        'cdcctl;help;create-connector;delete' {
            break
        }
        'cdcctl;help;tail' {
            break
        }
        'cdcctl;help;load' {
            break
        }
        'cdcctl;help;replay-dlq' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Dead letters grouped by error class and table, with counts and first/last failure')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Dead letters one by one: where they came from, their headers, why they fail now')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Replay the selected dead letters that now decode; put the others back, counted')
            break
        }
        'cdcctl;help;replay-dlq;list' {
            break
        }
        'cdcctl;help;replay-dlq;show' {
            break
        }
        'cdcctl;help;replay-dlq;replay' {
            break
        }
        'cdcctl;help;health' {
            break
        }
        'cdcctl;help;verify' {
            break
        }
        'cdcctl;help;scd2' {
            break
        }
        'cdcctl;help;config' {
            break
        }
        'cdcctl;help;completions' {
            break
        }
        'cdcctl;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
