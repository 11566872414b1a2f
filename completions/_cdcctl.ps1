
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
        'cdcctl;config' {
            [CompletionResult]::new('--postgres-url', '--postgres-url', [CompletionResultType]::ParameterName, 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`')
            [CompletionResult]::new('--brokers', '--brokers', [CompletionResultType]::ParameterName, 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`')
            [CompletionResult]::new('--topic-prefix', '--topic-prefix', [CompletionResultType]::ParameterName, 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`')
            [CompletionResult]::new('--connect-url', '--connect-url', [CompletionResultType]::ParameterName, 'Kafka Connect REST URL')
            [CompletionResult]::new('--snowflake-account', '--snowflake-account', [CompletionResultType]::ParameterName, 'Snowflake account identifier (`orgname-account`)')
            [CompletionResult]::new('--snowflake-url', '--snowflake-url', [CompletionResultType]::ParameterName, 'Snowflake endpoint URL, overriding the one derived from the account')
            [CompletionResult]::new('--duckdb-path', '--duckdb-path', [CompletionResultType]::ParameterName, 'DuckDB database file')
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
