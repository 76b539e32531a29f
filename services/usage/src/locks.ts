import { serviceSchema, type KitOptions } from '@parley/kit';

/**
 * The usage service's advisory locks, by name (`hashtext` of the name is the key). Names carry
 * the service's schema, so test runs and deployments sharing a database do not wait on each other.
 */
export const Locks = {
  /**
   * The price table: writers that price records hold it shared; storing prices holds it
   * exclusively, so a price change waits for in-flight batches and every later batch sees it.
   */
  pricing: (options: Pick<KitOptions, 'service' | 'config'>) =>
    `parley:${serviceSchema(options.service, options.config)}:prices`,
} as const;
