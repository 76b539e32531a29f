import { Controller, Delete, Get, HttpCode, Inject, Patch, Post, Put } from '@nestjs/common';
import {
  AccessControlRpc,
  CreateGroupBodySchema,
  GroupSchema,
  IdParamSchema,
  MembershipSchema,
  PageQuerySchema,
  pageSchema,
  PutMemberBodySchema,
  UpdateGroupBodySchema,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, ValidBody, ValidParams, ValidQuery, type Valid } from '../http/api-route';
import { paged } from '../http/paging';
import { GroupMemberParamsSchema } from '../http/params';

@Controller('api/v1/groups')
export class GroupsController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post()
  @ApiRoute({
    summary: 'Create a group (admin)',
    tags: ['groups'],
    body: CreateGroupBodySchema,
    status: 201,
    response: GroupSchema,
    errors: ['CONFLICT'],
    admin: true,
  })
  create(@Caller() actor: Principal, @ValidBody() body: Valid<typeof CreateGroupBodySchema>) {
    return this.rpc.call(AccessControlRpc.createGroup, { actor, ...body });
  }

  @Get()
  @ApiRoute({
    summary: 'List groups (admin)',
    tags: ['groups'],
    query: PageQuerySchema,
    status: 200,
    response: pageSchema(GroupSchema),
    admin: true,
    errors: ['INVALID_CURSOR'],
  })
  list(@Caller() actor: Principal, @ValidQuery() query: Valid<typeof PageQuerySchema>) {
    return this.rpc.call(AccessControlRpc.listGroups, { actor, ...paged(query) });
  }

  @Patch(':id')
  @ApiRoute({
    summary: 'Rename a group or change its remark (admin)',
    tags: ['groups'],
    params: IdParamSchema,
    body: UpdateGroupBodySchema,
    status: 200,
    response: GroupSchema,
    errors: ['NOT_FOUND', 'CONFLICT'],
    admin: true,
  })
  update(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() patch: Valid<typeof UpdateGroupBodySchema>,
  ) {
    return this.rpc.call(AccessControlRpc.updateGroup, { actor, id, patch });
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiRoute({
    summary: 'Delete a group (admin); the default group cannot be deleted (409)',
    tags: ['groups'],
    params: IdParamSchema,
    status: 204,
    response: null,
    errors: ['NOT_FOUND', 'CONFLICT'],
    admin: true,
  })
  async remove(@Caller() actor: Principal, @ValidParams() { id }: Valid<typeof IdParamSchema>) {
    await this.rpc.call(AccessControlRpc.deleteGroup, { actor, id });
  }

  @Get(':id/members')
  @ApiRoute({
    summary: "List a group's members (admins and the group's admins)",
    tags: ['groups'],
    params: IdParamSchema,
    query: PageQuerySchema,
    status: 200,
    response: pageSchema(MembershipSchema),
    errors: ['FORBIDDEN', 'NOT_FOUND', 'INVALID_CURSOR'],
  })
  members(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidQuery() query: Valid<typeof PageQuerySchema>,
  ) {
    return this.rpc.call(AccessControlRpc.listMembers, { actor, id, ...paged(query) });
  }

  @Put(':id/members/:user_id')
  @ApiRoute({
    summary: "Add a member or change their group-admin flag (admins and the group's admins)",
    tags: ['groups'],
    params: GroupMemberParamsSchema,
    body: PutMemberBodySchema,
    optionalBody: true,
    status: 200,
    response: MembershipSchema,
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  })
  putMember(
    @Caller() actor: Principal,
    @ValidParams() { id, user_id }: Valid<typeof GroupMemberParamsSchema>,
    @ValidBody() { is_group_admin }: Valid<typeof PutMemberBodySchema>,
  ) {
    return this.rpc.call(AccessControlRpc.putMember, { actor, id, user_id, is_group_admin });
  }

  @Delete(':id/members/:user_id')
  @HttpCode(204)
  @ApiRoute({
    summary: "Remove a member (admins and the group's admins)",
    tags: ['groups'],
    params: GroupMemberParamsSchema,
    status: 204,
    response: null,
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  })
  async removeMember(
    @Caller() actor: Principal,
    @ValidParams() { id, user_id }: Valid<typeof GroupMemberParamsSchema>,
  ) {
    await this.rpc.call(AccessControlRpc.deleteMember, { actor, id, user_id });
  }
}
