
use builtin;
use str;

set edit:completion:arg-completer[cdcctl] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'cdcctl'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'cdcctl'= {
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand setup-source 'Check and prepare Postgres for CDC: wal_level, slots, privileges, publication, slot'
            cand generate-data 'Fill Postgres with realistic rows and drive a stream of changes'
            cand create-connector 'Apply and manage Debezium connectors on Kafka Connect'
            cand connector 'Apply and manage Debezium connectors on Kafka Connect'
            cand tail 'Read CDC topics decoded: one line per change, or JSON, or the raw messages'
            cand config 'Show every effective setting and where it came from (secrets as ****)'
            cand completions 'Print a shell completion script to stdout'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cdcctl;setup-source'= {
            cand --tables 'Tables to capture, comma separated: `users,commerce.products,"My Table"`'
            cand --schemas 'Capture every table of these schemas, comma separated'
            cand --publication 'Publication to create or extend'
            cand --slot 'Logical replication slot (pgoutput) to create; none unless given'
            cand --replica-identity 'Set the replica identity of every chosen table (unchanged unless given)'
            cand --postgres-url 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --demo 'Create the demo schema (the seed pipelines'' four tables) and use its tables'
            cand --apply-system 'Also run `ALTER SYSTEM` for wal_level, max_replication_slots and max_wal_senders'
            cand --dry-run 'Print the SQL that would run, and change nothing'
            cand --teardown 'Drop the slot (`--slot`) and the publication instead, reporting the WAL the slot retained'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;generate-data'= {
            cand --table 'Tables to fill instead of the demo tables: `users,shop.orders` (repeatable)'
            cand --rows 'Bulk-load N rows into each table with COPY, parents before children'
            cand --events 'Then make N changes (inserts, updates, deletes as `--mix` says)'
            cand --duration 'Make changes for this long instead of a count: `30s`, `5m`, `1h`'
            cand --rate 'Changes per second; 0 makes them as fast as possible'
            cand --mix 'Relative weights of inserts, updates and deletes among the changes'
            cand --tx-size 'Changes per transaction'
            cand --seed 'Seed of the generator: the same seed on the same starting data gives the same rows'
            cand --postgres-url 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --large-text 'Put values over 8 KB in one text column per table, so that TOAST is exercised'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;create-connector'= {
            cand --name 'Connector name [default: `connect.connector`, i.e. `cdcctl`]'
            cand --tables 'Tables to capture, comma separated: `users,commerce.products,"My Table"`'
            cand --slot 'Replication slot [default: the connector''s current one, else `cdcctl_<name>`]'
            cand --publication 'Publication [default: the connector''s current one, else see below]'
            cand --topic-prefix 'Topic prefix: topics are `<PREFIX>.<schema>.<table>` [default: `kafka.topic_prefix`]'
            cand --snapshot-mode 'What the connector snapshots when it starts [default: initial]'
            cand --decimal-handling 'How numeric and decimal columns are encoded [default: precise]'
            cand --heartbeat 'Heartbeat interval, so the slot advances while the tables are idle; 0 turns it off [default: 10s]'
            cand --database-hostname 'Postgres host as the Connect worker reaches it [default: `postgres.host`]'
            cand --database-port 'Postgres port as the Connect worker reaches it [default: `postgres.port`]'
            cand --set 'Set any connector key, overriding everything else: `snapshot.mode=no_data` (repeatable)'
            cand --from-file 'Start from this connector config: Connect JSON (`{"name", "config"}` or a flat map) or TOML (flat keys, or `name` and a `[config]` table)'
            cand --timeout 'Longest wait with `--wait`; exit 1 when it passes'
            cand --postgres-url 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`'
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --no-schemas 'Plain JSON messages without the Connect schema (the loader needs the schema)'
            cand --dry-run 'Validate, print the final config (secrets as ****) and the diff; change nothing'
            cand --wait 'Wait until the connector and every task reach the new state (default on a terminal)'
            cand --no-wait 'Return as soon as the worker accepted the change'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'List the worker''s connectors: state, tasks, topic prefix, slot and tables'
            cand status 'Show a connector''s state and each task''s; exit 1 unless all are RUNNING'
            cand restart 'Restart the connector''s failed tasks (`--all`: the connector and every task)'
            cand pause 'Pause the connector: it stops reading, and its slot retains WAL meanwhile'
            cand resume 'Resume a paused or stopped connector'
            cand delete 'Delete the connector; `--drop-slot` also drops its replication slot'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cdcctl;connector'= {
            cand --name 'Connector name [default: `connect.connector`, i.e. `cdcctl`]'
            cand --tables 'Tables to capture, comma separated: `users,commerce.products,"My Table"`'
            cand --slot 'Replication slot [default: the connector''s current one, else `cdcctl_<name>`]'
            cand --publication 'Publication [default: the connector''s current one, else see below]'
            cand --topic-prefix 'Topic prefix: topics are `<PREFIX>.<schema>.<table>` [default: `kafka.topic_prefix`]'
            cand --snapshot-mode 'What the connector snapshots when it starts [default: initial]'
            cand --decimal-handling 'How numeric and decimal columns are encoded [default: precise]'
            cand --heartbeat 'Heartbeat interval, so the slot advances while the tables are idle; 0 turns it off [default: 10s]'
            cand --database-hostname 'Postgres host as the Connect worker reaches it [default: `postgres.host`]'
            cand --database-port 'Postgres port as the Connect worker reaches it [default: `postgres.port`]'
            cand --set 'Set any connector key, overriding everything else: `snapshot.mode=no_data` (repeatable)'
            cand --from-file 'Start from this connector config: Connect JSON (`{"name", "config"}` or a flat map) or TOML (flat keys, or `name` and a `[config]` table)'
            cand --timeout 'Longest wait with `--wait`; exit 1 when it passes'
            cand --postgres-url 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`'
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --no-schemas 'Plain JSON messages without the Connect schema (the loader needs the schema)'
            cand --dry-run 'Validate, print the final config (secrets as ****) and the diff; change nothing'
            cand --wait 'Wait until the connector and every task reach the new state (default on a terminal)'
            cand --no-wait 'Return as soon as the worker accepted the change'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'List the worker''s connectors: state, tasks, topic prefix, slot and tables'
            cand status 'Show a connector''s state and each task''s; exit 1 unless all are RUNNING'
            cand restart 'Restart the connector''s failed tasks (`--all`: the connector and every task)'
            cand pause 'Pause the connector: it stops reading, and its slot retains WAL meanwhile'
            cand resume 'Resume a paused or stopped connector'
            cand delete 'Delete the connector; `--drop-slot` also drops its replication slot'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cdcctl;create-connector;list'= {
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;connector;list'= {
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;create-connector;status'= {
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;connector;status'= {
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;create-connector;restart'= {
            cand --timeout 'Longest wait with `--wait`; exit 1 when it passes'
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --all 'Restart the connector and every task, not only the failed ones'
            cand --wait 'Wait until the connector and every task reach the new state (default on a terminal)'
            cand --no-wait 'Return as soon as the worker accepted the change'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;connector;restart'= {
            cand --timeout 'Longest wait with `--wait`; exit 1 when it passes'
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --all 'Restart the connector and every task, not only the failed ones'
            cand --wait 'Wait until the connector and every task reach the new state (default on a terminal)'
            cand --no-wait 'Return as soon as the worker accepted the change'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;create-connector;pause'= {
            cand --timeout 'Longest wait with `--wait`; exit 1 when it passes'
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --wait 'Wait until the connector and every task reach the new state (default on a terminal)'
            cand --no-wait 'Return as soon as the worker accepted the change'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;connector;pause'= {
            cand --timeout 'Longest wait with `--wait`; exit 1 when it passes'
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --wait 'Wait until the connector and every task reach the new state (default on a terminal)'
            cand --no-wait 'Return as soon as the worker accepted the change'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;create-connector;resume'= {
            cand --timeout 'Longest wait with `--wait`; exit 1 when it passes'
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --wait 'Wait until the connector and every task reach the new state (default on a terminal)'
            cand --no-wait 'Return as soon as the worker accepted the change'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;connector;resume'= {
            cand --timeout 'Longest wait with `--wait`; exit 1 when it passes'
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --wait 'Wait until the connector and every task reach the new state (default on a terminal)'
            cand --no-wait 'Return as soon as the worker accepted the change'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;create-connector;delete'= {
            cand --postgres-url 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`'
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --drop-slot 'Also drop the replication slot (after resetting the offsets and deleting the connector)'
            cand --drop-publication 'Also drop the publication, unless another connector on the worker uses it'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;connector;delete'= {
            cand --postgres-url 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`'
            cand --connect-url 'Kafka Connect REST URL'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand --drop-slot 'Also drop the replication slot (after resetting the offsets and deleting the connector)'
            cand --drop-publication 'Also drop the publication, unless another connector on the worker uses it'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;create-connector;help'= {
            cand list 'List the worker''s connectors: state, tasks, topic prefix, slot and tables'
            cand status 'Show a connector''s state and each task''s; exit 1 unless all are RUNNING'
            cand restart 'Restart the connector''s failed tasks (`--all`: the connector and every task)'
            cand pause 'Pause the connector: it stops reading, and its slot retains WAL meanwhile'
            cand resume 'Resume a paused or stopped connector'
            cand delete 'Delete the connector; `--drop-slot` also drops its replication slot'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cdcctl;create-connector;help;list'= {
        }
        &'cdcctl;create-connector;help;status'= {
        }
        &'cdcctl;create-connector;help;restart'= {
        }
        &'cdcctl;create-connector;help;pause'= {
        }
        &'cdcctl;create-connector;help;resume'= {
        }
        &'cdcctl;create-connector;help;delete'= {
        }
        &'cdcctl;create-connector;help;help'= {
        }
        &'cdcctl;connector;help'= {
            cand list 'List the worker''s connectors: state, tasks, topic prefix, slot and tables'
            cand status 'Show a connector''s state and each task''s; exit 1 unless all are RUNNING'
            cand restart 'Restart the connector''s failed tasks (`--all`: the connector and every task)'
            cand pause 'Pause the connector: it stops reading, and its slot retains WAL meanwhile'
            cand resume 'Resume a paused or stopped connector'
            cand delete 'Delete the connector; `--drop-slot` also drops its replication slot'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cdcctl;connector;help;list'= {
        }
        &'cdcctl;connector;help;status'= {
        }
        &'cdcctl;connector;help;restart'= {
        }
        &'cdcctl;connector;help;pause'= {
        }
        &'cdcctl;connector;help;resume'= {
        }
        &'cdcctl;connector;help;delete'= {
        }
        &'cdcctl;connector;help;help'= {
        }
        &'cdcctl;tail'= {
            cand --topic 'Read this topic (repeatable)'
            cand --pattern 'Read every topic whose whole name matches this regular expression'
            cand --from 'Where to start: `beginning`, `end`, `offset:N`, `offset:-N` (last N of each partition), `time:RFC3339` or a relative time such as `-5m`'
            cand -n 'Stop after printing this many events'
            cand --count 'Stop after printing this many events'
            cand --op 'Only these operations, comma separated: c, r, u, d, t, m (or create, read, update, delete, truncate, message)'
            cand --key 'Only events whose key has this value: `id=42` (repeatable; `42` alone for one-column keys)'
            cand --where 'Only events whose row has this value: `status=paid` (the after image, or the before image of a delete; repeatable, all must match)'
            cand --format 'How each event is printed [default: `pretty`, or `json` with `--output json`]'
            cand --brokers 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`'
            cand --topic-prefix 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -f 'Keep reading new changes until interrupted (default on a terminal)'
            cand --follow 'Keep reading new changes until interrupted (default on a terminal)'
            cand -e 'Stop once every partition is read up to where it ended at start (default in a pipe)'
            cand --until-end 'Stop once every partition is read up to where it ended at start (default in a pipe)'
            cand --tombstones 'Also print tombstones (the null-value message Kafka compaction uses after a delete)'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;config'= {
            cand --postgres-url 'Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`'
            cand --brokers 'Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`'
            cand --topic-prefix 'Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`'
            cand --connect-url 'Kafka Connect REST URL'
            cand --snowflake-account 'Snowflake account identifier (`orgname-account`)'
            cand --snowflake-url 'Snowflake endpoint URL, overriding the one derived from the account'
            cand --duckdb-path 'DuckDB database file'
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;completions'= {
            cand --profile 'Profile of cdcctl.toml to use (`[profiles.NAME]`)'
            cand --config 'Configuration file to read instead of the searched ones'
            cand -o 'Output format: tables for people, or JSON for scripts'
            cand --output 'Output format: tables for people, or JSON for scripts'
            cand -v 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand --verbose 'Log more to stderr (-v info, -vv debug, -vvv trace)'
            cand -q 'Print only data and errors: no progress, no warnings'
            cand --quiet 'Print only data and errors: no progress, no warnings'
            cand --no-color 'Never use colour (also when `NO_COLOR` is set)'
            cand -y 'Answer yes to every confirmation prompt'
            cand --yes 'Answer yes to every confirmation prompt'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cdcctl;help'= {
            cand setup-source 'Check and prepare Postgres for CDC: wal_level, slots, privileges, publication, slot'
            cand generate-data 'Fill Postgres with realistic rows and drive a stream of changes'
            cand create-connector 'Apply and manage Debezium connectors on Kafka Connect'
            cand tail 'Read CDC topics decoded: one line per change, or JSON, or the raw messages'
            cand config 'Show every effective setting and where it came from (secrets as ****)'
            cand completions 'Print a shell completion script to stdout'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cdcctl;help;setup-source'= {
        }
        &'cdcctl;help;generate-data'= {
        }
        &'cdcctl;help;create-connector'= {
            cand list 'List the worker''s connectors: state, tasks, topic prefix, slot and tables'
            cand status 'Show a connector''s state and each task''s; exit 1 unless all are RUNNING'
            cand restart 'Restart the connector''s failed tasks (`--all`: the connector and every task)'
            cand pause 'Pause the connector: it stops reading, and its slot retains WAL meanwhile'
            cand resume 'Resume a paused or stopped connector'
            cand delete 'Delete the connector; `--drop-slot` also drops its replication slot'
        }
        &'cdcctl;help;create-connector;list'= {
        }
        &'cdcctl;help;create-connector;status'= {
        }
        &'cdcctl;help;create-connector;restart'= {
        }
        &'cdcctl;help;create-connector;pause'= {
        }
        &'cdcctl;help;create-connector;resume'= {
        }
        &'cdcctl;help;create-connector;delete'= {
        }
        &'cdcctl;help;tail'= {
        }
        &'cdcctl;help;config'= {
        }
        &'cdcctl;help;completions'= {
        }
        &'cdcctl;help;help'= {
        }
    ]
    $completions[$command]
}
